"""Dropout-op throughput against flax.nnx.Dropout and the memory-bound floor ``x * 2``.

    python scripts/bench_ops.py [--sizes 1048576,16777216] [--out results]

Measures in one process and reports ratios to ``x * 2`` (machines are shared and noisy):
median of ``--repeats`` timed calls after a warm-up call. Writes ``bench_ops.json`` and
``bench_ops.md`` atomically under ``--out``.
"""

from __future__ import annotations

import argparse
import time

import benchlib
import jax
import jax.numpy as jnp
from flax import nnx

import dropjax


def bench_case(size, dtype, impl, rate, repeats):
  x = jnp.ones((size // 1024, 1024), dtype)
  key = benchlib.key(0, impl)
  flax_layer = nnx.Dropout(rate, rngs=nnx.Rngs(benchlib.key(0, impl)))
  candidates = {
      "x * 2": (jax.jit(lambda k, x: x * 2), (key, x)),
      "flax.nnx.Dropout": (nnx.jit(lambda m, x: m(x)), (flax_layer, x)),
      "dropjax (auto bits)": (jax.jit(lambda k, x: dropjax.dropout(k, x, rate)), (key, x)),
  }
  for bits in (1, 4, 8, 16, 32):
    candidates[f"dropjax bits={bits}"] = (
        jax.jit(lambda k, x, b=bits: dropjax.dropout(k, x, rate, bits=b)), (key, x))
  seconds = {name: benchlib.median_seconds(fn, *args, repeats=repeats)
             for name, (fn, args) in candidates.items()}
  floor = seconds["x * 2"]
  return [{"size": size, "dtype": jnp.dtype(dtype).name, "impl": impl, "rate": rate,
           "op": name, "ms": 1e3 * s, "vs_x2": s / floor,
           "vs_flax": s / seconds["flax.nnx.Dropout"]} for name, s in seconds.items()]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", default="1048576,16777216")
  parser.add_argument("--dtypes", default="float32,bfloat16")
  parser.add_argument("--impls", default="threefry2x32,philox2x32,rbg,keyed_hash")
  parser.add_argument("--rate", type=float, default=0.5)
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--out", default="results")
  args = parser.parse_args()
  rows = []
  start = time.perf_counter()
  for size in map(int, args.sizes.split(",")):
    for dtype in args.dtypes.split(","):
      for impl in args.impls.split(","):
        rows.extend(bench_case(size, jnp.dtype(dtype), impl, args.rate, args.repeats))
        print(f"done size={size} dtype={dtype} impl={impl}", flush=True)
  meta = benchlib.machine_meta(start)
  caption = (f"Dropout op time as a multiple of `x * 2` (rate {args.rate}; {meta['device']}, "
             f"{meta['cpu_count']} CPUs, jax {meta['jax']}; `python scripts/bench_ops.py`).")
  columns = [("size", "size", ","), ("dtype", "dtype", "s"), ("impl", "PRNG", "s"),
             ("op", "op", "s"), ("ms", "ms", ".2f"), ("vs_x2", "× `x*2`", ".2f"),
             ("vs_flax", "× Flax", ".2f")]
  benchlib.write_results(args.out, "bench_ops", meta, rows, caption, columns)

if __name__ == "__main__":
  main()
