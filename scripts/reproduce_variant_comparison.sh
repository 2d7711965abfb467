#!/usr/bin/env bash
# Regenerates results/variant_comparison.{md,csv,png} and the README table (~13 min, 2 CPUs).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
workdir=${1:-runs/variant_comparison_$(date +%Y%m%d_%H%M%S)}
$PY -m experiments.main --config=experiments/configs/variant_comparison.py --workdir="$workdir"
mkdir -p results
cp "$workdir/results.md" results/variant-comparison-table.md
cp "$workdir/results.csv" results/variant_comparison.csv
cp "$workdir/variant_comparison.png" results/variant_comparison.png
$PY scripts/update_readme.py
