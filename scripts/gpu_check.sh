#!/usr/bin/env bash
# The one-command GPU check: writes OUT/gpu_check.json, OUT/gpu_check.md, OUT/gpu_check.log.
#   bash scripts/gpu_check.sh OUT                   # on a GPU machine, at most ~8 minutes (460 s budget)
#   bash scripts/gpu_check.sh --cpu-rehearsal OUT   # every part on the CPU with tiny shapes (~1-2 min)
#   bash scripts/gpu_check.sh OUT --budget train=200 --parts env,train   # budgets and parts: --help
# It uses the python3 on PATH (or $PYTHON) as it is: no virtual environment is created or changed. On
# the GPU machine the packages it lacks come from scripts/gpu_wheels.sh (docs/benchmarks.md, "GPU").
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
cd "$ROOT"
exec "${PYTHON:-python3}" tools/gpu_check.py "$@"
