#!/usr/bin/env bash
# Run the whole test suite on the CPU (sets up .venv on first use). Extra args go to pytest.
# Two pytest-xdist workers, one test file each at a time (most tests are single-threaded or wait on
# subprocesses; measured on the 2-core CPU machine: 6 min 10 s); NLNET_TEST_WORKERS=0 runs serially.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
python -m pytest -n "${NLNET_TEST_WORKERS:-2}" --dist loadfile "$@"
