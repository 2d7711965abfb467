#!/usr/bin/env bash
# Regenerates the UCI table (results/uci_table.{md,csv}) and its README copy.
# Runs every dataset present under the data dir, small ones first; resumable: rerun the same
# command after an interruption and finished datasets, phases and epochs are kept.
#   bash scripts/reproduce_uci.sh [workdir] [dataset ...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export DROPJAX_DATA_DIR=${DROPJAX_DATA_DIR:-$(cd ../shared/data 2>/dev/null && pwd)}
workdir=${1:-runs/uci}
shift || true
datasets=("$@")
if [ ${#datasets[@]} -eq 0 ]; then
  datasets=(yacht bostonHousing energy kin8nm power-plant naval-propulsion-plant
            protein-tertiary-structure)
fi
for name in "${datasets[@]}"; do
  if [ -d "$DROPJAX_DATA_DIR/uci/$name/data" ]; then
    $PY -m experiments.main --config=experiments/configs/uci.py --config.dataset="$name" \
        --workdir="$workdir"
    $PY scripts/uci_table.py --workdir "$workdir"
  fi
done
cp results/uci_table.md results/uci-table.md
$PY scripts/update_readme.py
