#!/usr/bin/env bash
# Kept so that the commands printed in committed reports still run; the one implementation
# is scripts/reproduce.py (python scripts/reproduce.py uci --workdir DIR --datasets a,b).
#   bash scripts/reproduce_uci.sh [workdir] [dataset ...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
workdir=${1:-runs/uci}
shift || true
datasets=$(IFS=,; echo "$*")
exec "$PY" scripts/reproduce.py uci --workdir="$workdir" ${datasets:+--datasets="$datasets"}
