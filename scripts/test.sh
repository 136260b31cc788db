#!/usr/bin/env bash
# Run the whole test suite on the CPU (sets up .venv on first use). Extra args go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
python -m pytest "$@"
