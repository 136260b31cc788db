# Sourced by scripts/*.sh: create or reuse .venv and install nlnet (with its dev extra) into it.
# Re-installs only when setup.py changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NLNET_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[nlnet] creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
STAMP="$VENV/.nlnet-installed"
WANT="$(sha256sum "$ROOT/setup.py" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "[nlnet] installing nlnet and its pinned dependencies (first run: a few minutes)"
  python -m pip install -q --upgrade pip
  # compat: the project folder on sys.path, so that Hydra's plugin scan finds hydra_plugins/ (the launchers)
  python -m pip install -q -e "$ROOT[dev]" --config-settings editable_mode=compat
  echo "$WANT" > "$STAMP"
fi
cd "$ROOT"
