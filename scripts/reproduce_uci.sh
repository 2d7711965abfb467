#!/usr/bin/env bash
# Kept because the committed UCI table (results/uci-table.md), which predates
# scripts/reproduce.py, prints this command; it goes when that table is regenerated. The
# one implementation is scripts/reproduce.py (python scripts/reproduce.py uci --workdir DIR
# --datasets a,b).
#   bash scripts/reproduce_uci.sh [workdir] [dataset ...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
workdir=${1:-runs/uci}
shift || true
datasets=$(IFS=,; echo "$*")
exec "$PY" scripts/reproduce.py uci --workdir="$workdir" ${datasets:+--datasets="$datasets"}
