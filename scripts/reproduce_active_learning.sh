#!/usr/bin/env bash
# Regenerates the active-learning study (Gal, Islam & Ghahramani 2017):
# results/active-learning-<option>.md and results/active_learning_<option>.png.
#   bash scripts/reproduce_active_learning.sh [digits|mnist|mnist_cpu] [workdir]
# digits (default): the embedded dataset, about an hour on 2 CPUs. mnist: the paper's
# protocol (GPU-sized). Resumable per round: rerun the same command after an interruption.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export DROPJAX_DATA_DIR=${DROPJAX_DATA_DIR:-$(cd ../shared/data 2>/dev/null && pwd)}
option=${1:-digits}
workdir=${2:-runs/active_learning_$option}
config=experiments/configs/active_learning.py
[ "$option" = digits ] || config="$config:$option"
$PY -m experiments.main --config="$config" --workdir="$workdir"
cp "$workdir/results.md" "results/active-learning-${option//_/-}.md"
cp "$workdir/curves.png" "results/active_learning_$option.png"
$PY scripts/update_readme.py
