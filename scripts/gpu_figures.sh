#!/usr/bin/env bash
# The GPU figures of docs/performance.md in one run: about 10 minutes on one H100.
#
#   bash scripts/gpu_figures.sh [OUT]   (OUT defaults to results/)
#
# Writes OUT/bench_ops_gpu.{json,md} (dropout against x * 2 and flax.nnx.Dropout),
# OUT/bench_suite_gpu.{json,md} (train-step overhead, MC sampling against the loop) and
# OUT/uci_yacht_gpu.md (the whole Yacht protocol: 240 grid models, 20 retrained ones,
# 10,000 MC samples each, with its per-phase seconds). Each step has its own time limit,
# so one slow step cannot take the others' time; a step that fails or times out is named
# and the others still run. Then: python scripts/update_docs.py
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-results}
mkdir -p "$out"
data_dir=${DROPJAX_DATA_DIR:-../shared/data}
python=${PYTHON:-.venv/bin/python}

if ! "$python" -c "import jax, sys; sys.exit(jax.devices()[0].platform != 'gpu')"; then
  echo "No GPU backend in $python's jax ($("$python" -c 'import jax; print(jax.devices())')):" \
       "install one, for example: $python -m pip install -U 'jax[cuda12]'" >&2
  exit 1
fi
"$python" -c "import jax; print(jax.devices())"

failed=()
step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2
  shift 2
  local tic=$SECONDS
  if timeout "$limit" "$@"; then
    echo "== $name: $((SECONDS - tic)) s"
  else
    echo "== $name FAILED or timed out after $((SECONDS - tic)) s (limit $limit s)" >&2
    failed+=("$name")
  fi
}

step bench_ops 120 "$python" scripts/bench_ops.py --out "$out" --repeats 20
step bench 150 "$python" scripts/bench.py --out "$out"
workdir=$(mktemp -d)
step uci_yacht 300 "$python" -m experiments.main --config=experiments/uci/config.py \
    --config.dataset=yacht --config.data_dir="$data_dir" --workdir="$workdir"
if [[ -f $workdir/yacht/results.md ]]; then
  { cat "$workdir/yacht/results.md"
    echo
    "$python" -c "import json, sys, jax; s = json.load(open(sys.argv[1]))['seconds']; \
print(f'On {jax.devices()[0].device_kind}: ' + ', '.join(f'{k} {v:.0f} s' for k, v in s.items()))" \
        "$workdir/yacht/metrics.json"
  } > "$out/uci_yacht_gpu.md"
  cat "$out/uci_yacht_gpu.md"
fi
if ((${#failed[@]})); then
  echo "Failed: ${failed[*]}" >&2
  exit 1
fi
