#!/usr/bin/env bash
# Regenerates the MC-calibration study on MNIST (Ovadia et al. 2019 setup):
# results/calibration-<option>.md and results/calibration_<option>.png.
#   bash scripts/reproduce_calibration.sh [mnist|mnist_lenet] [workdir]
# mnist: the 2x200 MLP; mnist_lenet: LeNet-5.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export DROPJAX_DATA_DIR=${DROPJAX_DATA_DIR:-$(cd ../shared/data 2>/dev/null && pwd)}
option=${1:-mnist}
workdir=${2:-runs/calibration_$option}
$PY -m experiments.main --config="experiments/configs/mc_calibration.py:$option" --workdir="$workdir"
cp "$workdir/results.md" "results/calibration-${option//_/-}.md"
cp "$workdir/shift.png" "results/calibration_$option.png"
$PY scripts/update_readme.py
