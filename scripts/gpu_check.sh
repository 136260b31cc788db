#!/usr/bin/env bash
# The one-command GPU check: writes OUT/gpu_check.json, OUT/gpu_check.md, OUT/gpu_check.log.
#   bash scripts/gpu_check.sh OUT                   # on a GPU machine (budgets: --help; default about 8 minutes)
#   bash scripts/gpu_check.sh --cpu-rehearsal OUT   # every part on the CPU with tiny shapes (2-5 min)
#   bash scripts/gpu_check.sh OUT --budget train=200 --parts env,train   # budgets and parts: --help
# It uses the python3 on PATH (or $PYTHON) as it is: no virtual environment is created or changed. For a
# GPU machine without network, dev/gpu_wheels.sh prepares the packages it lacks (docs/benchmarks.md, "GPU").
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
cd "$ROOT"
exec "${PYTHON:-python3}" -m benchmarks.gpu_check "$@"
