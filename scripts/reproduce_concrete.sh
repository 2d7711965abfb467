#!/usr/bin/env bash
# Regenerates the concrete-dropout synthetic study (Gal, Hron & Kendall 2017, §4.1):
# results/concrete-synthetic.md and results/concrete_synthetic.png.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
workdir=${1:-runs/concrete_synthetic}
$PY -m experiments.main --config=experiments/configs/concrete_dropout.py --workdir="$workdir"
cp "$workdir/results.md" results/concrete-synthetic.md
cp "$workdir/learned_rates.png" results/concrete_synthetic.png
$PY scripts/update_readme.py
