#!/usr/bin/env bash
# ruff (style, bugs, import order) and mypy on nlnet/, as configured in pyproject.toml; exits non-zero on
# any finding. scripts/test.sh runs it before the tests. Extra args go to ruff (e.g. --statistics).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
status=0
echo "[nlnet] ruff check nlnet/"
ruff check "$@" nlnet || status=1
echo "[nlnet] mypy nlnet/"
mypy || status=1
exit "$status"
