#!/usr/bin/env bash
# Regenerates the ensemble-interpretation results (Srivastava et al. 2014, Fig. 11, and the
# exact sub-network averages) on MNIST: results/ensemble-mnist.md, results/ensemble_mnist.png.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export DROPJAX_DATA_DIR=${DROPJAX_DATA_DIR:-$(cd ../shared/data 2>/dev/null && pwd)}
workdir=${1:-runs/ensemble_mnist}
$PY -m experiments.main --config=experiments/configs/ensemble_interpretation.py:mnist \
    --workdir="$workdir"
cp "$workdir/results.md" results/ensemble-mnist.md
cp "$workdir/mc_vs_weight_scaling.png" results/ensemble_mnist.png
$PY scripts/update_readme.py
