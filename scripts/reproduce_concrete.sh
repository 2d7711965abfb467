#!/usr/bin/env bash
# Kept so that the commands printed in committed reports still run; the one implementation
# is scripts/reproduce.py (python scripts/reproduce.py concrete_synthetic --workdir DIR).
#   bash scripts/reproduce_concrete.sh [workdir]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
exec "$PY" scripts/reproduce.py concrete_synthetic ${1:+--workdir="$1"}
