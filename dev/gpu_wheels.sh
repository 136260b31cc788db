#!/usr/bin/env bash
# Wheels for a GPU machine without network (CPython 3.12, manylinux x86-64, a CUDA PyTorch installed):
# everything nlnet imports that such a machine lacks (PyAV, Hydra/OmegaConf, pytorchvideo, fvcore/iopath and
# their missing dependencies), one pinned version each (dev/wheels.py). Packages published only as source are
# built here into pure-Python wheels. The folder is then checked offline and the install command printed.
#   bash dev/gpu_wheels.sh                       # into .whl/ (git-ignored: copy it to the machine with the checkout)
#   bash dev/gpu_wheels.sh DIR [FREEZE.txt]      # FREEZE.txt: `pip freeze` of the machine, for the check
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${1:-$ROOT/.whl}"
HAVE="${2:-}"
PYTHON="${PYTHON:-python3}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$DIR"
PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64; do PLATFORMS+=(--platform "$p"); done
# shellcheck disable=SC2046
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLATFORMS[@]}" -d "$DIR" $("$PYTHON" -m dev.wheels list binary)
# shellcheck disable=SC2046
"$PYTHON" -m pip wheel -q --no-deps -w "$DIR" $("$PYTHON" -m dev.wheels list source)
"$PYTHON" -m dev.wheels check "$DIR" ${HAVE:+--machine-has "$HAVE"}
DIR="$(cd "$DIR" && pwd)"
case "$DIR" in
  "$ROOT"/*) REL="${DIR#"$ROOT"/}" ;;
  *) REL="$DIR"
     echo "note: $DIR is outside the repository; copy it to the GPU machine beside the checkout" ;;
esac
echo "on the GPU machine, from the repository root:"
echo "  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site" \
     "$REL/*.whl && export PYTHONPATH=/tmp/site"
