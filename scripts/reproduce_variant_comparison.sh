#!/usr/bin/env bash
# Regenerates one variant-comparison table, its CSV and figure, and the README block.
#   bash scripts/reproduce_variant_comparison.sh             # the demo (~13 min, 2 CPUs)
#   bash scripts/reproduce_variant_comparison.sh full        # 40 epochs, 3 scales (~19 min)
#   bash scripts/reproduce_variant_comparison.sh mnist_cpu   # MNIST at CPU size (~2 hours)
# A second argument names the workdir (a finished one only regenerates the report).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
option=${1:-}
workdir=${2:-runs/variant_comparison${option:+_$option}}
config=experiments/configs/variant_comparison.py${option:+:$option}
export DROPJAX_DATA_DIR=${DROPJAX_DATA_DIR:-$(cd ../shared/data 2>/dev/null && pwd)}
$PY -m experiments.main --config="$config" --workdir="$workdir"
mkdir -p results
if [ -z "$option" ]; then
  table=variant-comparison-table files=variant_comparison
else
  table=variant-comparison-${option//_/-} files=variant_comparison_$option
fi
cp "$workdir/results.md" "results/$table.md"
cp "$workdir/results.csv" "results/$files.csv"
cp "$workdir/variant_comparison.png" "results/$files.png"
$PY scripts/update_readme.py
