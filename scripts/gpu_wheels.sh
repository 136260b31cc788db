#!/usr/bin/env bash
# Wheels for the GPU machine (CPython 3.12, manylinux x86-64, no network there): everything nlnet imports
# that its image lacks (PyAV, Hydra/OmegaConf, pytorchvideo, fvcore/iopath and their missing dependencies),
# one pinned version each (nlnet/bench/wheels.py). Packages published only as source are built here into
# pure-Python wheels. The folder is then checked offline and the device's install command printed.
#   bash scripts/gpu_wheels.sh          # into .whl/ (git-ignored; the device tool carries it: carry [".whl"])
#   bash scripts/gpu_wheels.sh DIR
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${1:-$ROOT/.whl}"
PYTHON="${PYTHON:-python3}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$DIR"
PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64; do PLATFORMS+=(--platform "$p"); done
# shellcheck disable=SC2046
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLATFORMS[@]}" -d "$DIR" $("$PYTHON" -m nlnet.bench.wheels list binary)
# shellcheck disable=SC2046
"$PYTHON" -m pip wheel -q --no-deps -w "$DIR" $("$PYTHON" -m nlnet.bench.wheels list source)
"$PYTHON" -m nlnet.bench.wheels check "$DIR"
DIR="$(cd "$DIR" && pwd)"
case "$DIR" in
  "$ROOT"/*) REL="${DIR#"$ROOT"/}" ;;
  *) REL="$DIR"
     echo "note: $DIR is outside the repository; the device tool carries only (ignored) folders inside it" ;;
esac
echo "on the GPU machine, from the repository root:"
echo "  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site" \
     "$REL/*.whl && export PYTHONPATH=/tmp/site"
