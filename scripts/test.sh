#!/usr/bin/env bash
# The project's test command (README): the whole suite in the set-up's virtual environment.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${QNN_VENV:-.venv}
PY=python3
[ "$VENV" != "none" ] && PY="$VENV/bin/python"
exec "$PY" -m pytest -q -p no:cacheprovider "$@" tests
