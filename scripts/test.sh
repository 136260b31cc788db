#!/usr/bin/env bash
# Lint (scripts/lint.sh), then run the test suite on the CPU (sets up .venv on first use).
#   scripts/test.sh           every test, as CI runs them
#   scripts/test.sh --fast    all but the tests marked slow (subprocesses, torchrun, the GPU-check rehearsal)
# Other args go to pytest. Two pytest-xdist workers, one test file each at a time (most tests are
# single-threaded or wait on subprocesses; measured on the 2-core CPU machine: 6 min 10 s for every test);
# NLNET_TEST_WORKERS=0 runs serially.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$ROOT/scripts/lint.sh"
marks=()
if [ "${1:-}" = "--fast" ]; then
  shift
  marks=(-m "not slow")
fi
python -m pytest -n "${NLNET_TEST_WORKERS:-2}" --dist loadfile "${marks[@]}" "$@"
