#!/usr/bin/env bash
# Regenerates the concrete-dropout MLP study: results/concrete-mlp-<option>.md and
# results/concrete_mlp_<option>.png.
#   bash scripts/reproduce_concrete_mnist.sh [digits|mnist] [workdir]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export DROPJAX_DATA_DIR=${DROPJAX_DATA_DIR:-$(cd ../shared/data 2>/dev/null && pwd)}
option=${1:-mnist}
workdir=${2:-runs/concrete_mlp_$option}
config=experiments/configs/concrete_mnist.py
[ "$option" = digits ] || config="$config:$option"
$PY -m experiments.main --config="$config" --workdir="$workdir"
cp "$workdir/results.md" "results/concrete-mlp-$option.md"
cp "$workdir/learned_rates.png" "results/concrete_mlp_$option.png"
$PY scripts/update_readme.py
