"""Where the UCI table's time goes: per-phase times of one dataset, and its MC test pass.

    python scripts/bench_uci_phases.py [--dataset protein-tertiary-structure] [--out results]

The study itself (`experiments/uci`) runs twice on one split at a reduced scale, in one
process with a fresh persistent compilation cache: the first run compiles, the second finds
every program in the cache, so its phase times (the study's own ``seconds``) are the work
plus tracing and cache loads. Per epoch and per MC sample, scaled to the published protocol
(every split, ``n_epochs x 100`` epochs, 10,000 samples), they estimate what each phase
costs in a full run on this machine (an upper bound for training: the study trains a
phase's splits as one vmapped program, which costs less than one split's program times the
splits). The phases run in the first published table's layout (threefry keys and
``config.mc_vectorize = True``: `uci:threefry`), with the samples mapped (False; training
does not depend on it, so the two training rows show the noise), and as the study runs now:
mapped, with the keyed-hash PRNG (``config.prng_impl = "keyed_hash"``, `dropjax.prng`:
other masks, so other numbers). A second table times the test pass of one
model in both layouts and over chunk sizes (``config.mc_chunk_size``; both execution only:
sample ``i`` is keyed by ``i``), with philox and keyed-hash keys (faster bits, but every
mask changes), and the random bits its masks need.
Writes ``bench_uci_phases[_<platform>].{json,md}`` atomically.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import benchlib
import jax
import jax.numpy as jnp

from dropjax import masks, prng
from dropjax.data import uci
from experiments import main as experiments_main
from experiments.uci import config as uci_config
from experiments.uci import model as regression

_PHASES = ("validation_train", "validation_test", "final_train", "final_test")
# (config.mc_vectorize, config.prng_impl) of the timed runs: the first published table's
# (uci:threefry), mapped samples, and both changes (the study's defaults).
_LAYOUTS = ((True, "threefry2x32"), (False, "threefry2x32"), (False, "keyed_hash"))


def _run(dataset: str, data_dir: str, multiplier: int, samples: int, vectorize: bool,
         prng_impl: str) -> dict[str, float]:
  config = uci_config.get_config()
  config.prng_impl = prng_impl
  config.dataset, config.data_dir, config.num_splits = dataset, data_dir, 1
  config.epochs_multiplier, config.mc_samples = multiplier, samples
  config.mc_vectorize = vectorize
  config.segment_epochs = 10_000  # one compiled segment per phase
  with tempfile.TemporaryDirectory() as workdir:
    return experiments_main.run_study(config, workdir)["seconds"]


def phase_rows(dataset: str, data_dir: str, multiplier: int, samples: int, vectorize: bool,
               prng_impl: str = "threefry2x32") -> list[dict]:
  """Seconds per epoch and per MC sample of each phase, and their full-protocol totals."""
  ds = uci.load_uci(dataset, data_dir)
  _run(dataset, data_dir, multiplier, samples, vectorize, prng_impl)  # fills the cache
  seconds = _run(dataset, data_dir, multiplier, samples, vectorize, prng_impl)
  epochs, full_epochs = ds.n_epochs * multiplier, ds.n_epochs * 100
  rows = []
  for phase in _PHASES:
    per_unit = seconds[phase] / (epochs if phase.endswith("train") else samples)
    units = full_epochs if phase.endswith("train") else 10_000
    rows.append({"dataset": ds.name, "mc_vectorize": vectorize, "prng_impl": prng_impl,
                 "phase": phase,
                 "unit": "epoch" if phase.endswith("train") else "MC sample",
                 "ms_per_unit_one_split": 1e3 * per_unit,
                 "full_minutes": per_unit * units * ds.n_splits / 60})
  total = sum(r["full_minutes"] for r in rows)
  for r in rows:
    r["share"] = r["full_minutes"] / total
  return rows


def test_pass_rows(dataset: str, data_dir: str, samples: int, chunks: list[int],
                   repeats: int) -> list[dict]:
  """One model's MC test pass on split 0's validation points, per chunk size, beside the
  threefry bits its masks draw (two 16-bit lanes a word: the grid's rates are traced)."""
  ds = uci.load_uci(dataset, data_dir)
  split = uci.uci_split(ds, 0, validation=True)
  x, y = jnp.asarray(split.x_test, jnp.float32), jnp.asarray(split.y_test, jnp.float32)
  params = regression.init_regressor(jax.random.key(0), x.shape[1], ds.n_hidden)
  rate, tau = jnp.float32(ds.dropout_rates[0]), jnp.float32(ds.tau_values[0])
  key = jax.random.key(1)

  label = f"{ds.name}: one model, {x.shape[0]} points, {samples} samples"
  rows = []
  with masks.automatic_min_bits(8):  # as the studies draw their masks
    # The keys' generator changes every mask (and so the table): timed, not used.
    philox = jax.random.key(1, impl="philox2x32")
    hashed = prng.key(1, "keyed_hash")
    for vectorize, chunk, k, suffix in (
        [(True, 20, key, ""), *((False, c, key, "") for c in chunks),
         (False, 20, philox, ", philox2x32 keys"), (False, 20, hashed, ", keyed-hash keys")]):
      test = jax.jit(lambda p, k, r, c=chunk, v=vectorize: regression.mc_regression_stats(
          p, k, x, y, r, tau, 0.0, 1.0, num_samples=samples, chunk_size=c, vectorize=v))
      variant = (f"test pass, {'vmapped' if vectorize else 'mapped'} samples, "
                 f"mc_chunk_size={chunk}{suffix}")
      rows.append({"benchmark": label, "variant": variant,
                   "ms": 1e3 * benchlib.median_seconds(test, params, k, rate, repeats=repeats)})
  words = x.shape[0] * (x.shape[1] + ds.n_hidden) // 2

  def bits_only(k):
    def step(total, i):
      return total + (jax.random.bits(jax.random.fold_in(k, i), (words,), jnp.uint32) & 1).sum(
          dtype=jnp.uint32), None
    return jax.lax.scan(step, jnp.uint32(0), jnp.arange(samples))[0]

  for name, k in (("threefry", key), ("keyed-hash", hashed)):
    rows.append({"benchmark": label, "variant": f"{name} bits only ({words} words a sample)",
                 "ms": 1e3 * benchlib.median_seconds(jax.jit(bits_only), k, repeats=repeats)})
  baseline = rows[0]["ms"]
  for r in rows:
    r["ratio"] = r["ms"] / baseline
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", default="protein-tertiary-structure")
  parser.add_argument("--data_dir", default=os.environ.get("DROPJAX_DATA_DIR", ""))
  parser.add_argument("--multiplier", type=int, default=1,
                      help="epochs = n_epochs x this in the timed runs")
  parser.add_argument("--samples", type=int, default=500,
                      help="MC samples in the timed runs")
  parser.add_argument("--chunks", default="1,5,20,100")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--out", default="results")
  args = parser.parse_args()
  chunks = [int(c) for c in args.chunks.split(",")]
  study_chunk = uci_config.get_config().mc_chunk_size  # the phases' runs stream these
  if args.samples % study_chunk:
    parser.error(f"--samples = {args.samples} must be a multiple of the study's "
                 f"mc_chunk_size = {study_chunk}")
  if any((2 * args.samples) % c for c in [*chunks, 20]):
    parser.error(f"every --chunks value and 20 must divide 2 x --samples = {2 * args.samples}")
  start = time.perf_counter()
  with tempfile.TemporaryDirectory() as cache:
    # JAX sets its persistent cache up once per process: one directory for the whole run,
    # holding every program, so the timed run of each pair compiles nothing.
    experiments_main.use_compilation_cache(cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    phases = [row for vectorize, impl in _LAYOUTS for row in phase_rows(
        args.dataset, args.data_dir or None, args.multiplier, args.samples, vectorize, impl)]
    tests = test_pass_rows(args.dataset, args.data_dir or None, 2 * args.samples, chunks,
                           args.repeats)
  meta = benchlib.machine_meta(start)
  meta["phases"] = phases
  total = {layout: sum(r["full_minutes"] for r in phases
                       if (r["mc_vectorize"], r["prng_impl"]) == layout) for layout in _LAYOUTS}
  caption = (
      f"Where the UCI table's time goes ({meta['device']}, {meta['cpus_used']} of "
      f"{meta['cpu_count']} CPUs, "
      f"jax {meta['jax']}; `python scripts/bench_uci_phases.py --dataset {args.dataset}`). "
      "Per phase: milliseconds per epoch and per MC sample of one split, from a run of the "
      f"study ({args.multiplier} x n_epochs epochs, {args.samples} samples) whose programs "
      "were compiled by an identical run before it, scaled to the full protocol: "
      f"{total[True, 'threefry2x32']:.1f} minutes for this dataset as the first published "
      f"table ran (threefry, mc_vectorize = True; `uci:threefry`), "
      f"{total[False, 'threefry2x32']:.1f} with samples mapped one at a time, "
      f"{total[False, 'keyed_hash']:.1f} mapped with the keyed-hash PRNG (the study's "
      "defaults).\n\n"
      + benchlib.markdown_table(phases, (
          ("mc_vectorize", "mc_vectorize", ""), ("prng_impl", "prng_impl", "s"),
          ("phase", "phase", "s"), ("unit", "unit", "s"),
          ("ms_per_unit_one_split", "ms per unit, one split", ".2f"),
          ("full_minutes", "minutes, full protocol", ".1f"), ("share", "share", ".2f")))
      + "\n\nThe test pass of one model by layout and chunk size, and the random bits alone "
      "(ratio: time / the first published table's layout, vmapped chunks of 20, threefry).")
  benchlib.write_results(args.out, "bench_uci_phases", meta, tests, caption,
                         benchlib.VARIANT_COLUMNS)


if __name__ == "__main__":
  main()
