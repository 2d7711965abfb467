#!/usr/bin/env bash
# Regenerates the regularisers / schedules study: results/regularizers-<option>.md and
# results/regularizers_<option>.png.
#   bash scripts/reproduce_regularizers.sh [digits|mnist|mnist_cpu] [workdir]
# digits (default): the embedded dataset, about half an hour on 2 CPUs. mnist_cpu: MNIST with
# a narrower CNN, about 2 hours on 2 CPUs. mnist: GPU-sized. Resumable per (model, method,
# seed): rerun the same command after an interruption.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export DROPJAX_DATA_DIR=${DROPJAX_DATA_DIR:-$(cd ../shared/data 2>/dev/null && pwd)}
option=${1:-digits}
workdir=${2:-runs/regularizers_$option}
config=experiments/configs/regularizers.py
[ "$option" = digits ] || config="$config:$option"
$PY -m experiments.main --config="$config" --workdir="$workdir"
cp "$workdir/results.md" "results/regularizers-${option//_/-}.md"
cp "$workdir/regularizers.png" "results/regularizers_$option.png"
$PY scripts/update_readme.py
