#!/usr/bin/env bash
# Kept so that the commands printed in committed reports still run; the one implementation
# is scripts/reproduce.py (python scripts/reproduce.py uci_concrete --workdir DIR --datasets a,b).
#   bash scripts/reproduce_uci_concrete.sh [workdir] [dataset ...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
workdir=${1:-runs/uci_concrete}
shift || true
datasets=$(IFS=,; echo "$*")
exec "$PY" scripts/reproduce.py uci_concrete --workdir="$workdir" ${datasets:+--datasets="$datasets"}
