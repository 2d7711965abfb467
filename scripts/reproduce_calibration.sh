#!/usr/bin/env bash
# Regenerates the MC-calibration study on MNIST (Ovadia et al. 2019 setup):
# results/calibration-mnist.md and results/calibration_mnist.png.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export DROPJAX_DATA_DIR=${DROPJAX_DATA_DIR:-$(cd ../shared/data 2>/dev/null && pwd)}
workdir=${1:-runs/calibration_mnist}
$PY -m experiments.main --config=experiments/configs/mc_calibration.py:mnist --workdir="$workdir"
cp "$workdir/results.md" results/calibration-mnist.md
cp "$workdir/shift.png" results/calibration_mnist.png
$PY scripts/update_readme.py
