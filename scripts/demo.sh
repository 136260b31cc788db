#!/usr/bin/env bash
# The main job on the built-in default (sets up .venv on first use).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
python tools/bench_nonlocal.py "$@"
