#!/usr/bin/env bash
# Regenerates the concrete-dropout UCI table (results/uci-concrete-table.md) for the small
# datasets, next to the grid-search run in runs/uci (run scripts/reproduce_uci.sh first
# for the grid columns). Resumable.
#   bash scripts/reproduce_uci_concrete.sh [workdir] [dataset ...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export DROPJAX_DATA_DIR=${DROPJAX_DATA_DIR:-$(cd ../shared/data 2>/dev/null && pwd)}
workdir=${1:-runs/uci_concrete}
shift || true
datasets=("$@")
[ ${#datasets[@]} -gt 0 ] || datasets=(yacht bostonHousing energy)
for name in "${datasets[@]}"; do
  $PY -m experiments.main --config=experiments/configs/uci_concrete.py --config.dataset="$name" \
      --workdir="$workdir"
done
$PY scripts/uci_concrete_table.py --workdir "$workdir"
$PY scripts/update_readme.py
