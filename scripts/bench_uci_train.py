"""What a training step of the UCI grid costs, and how much of it is the dropout masks.

    python scripts/bench_uci_train.py [--dataset kin8nm] [--out results]

One compiled block of epochs of every split x grid model of ``--dataset`` (Kin8nm: 20 x 12 =
240 models, vmapped as the study trains them), timed after a warm-up call: with threefry
keys and the first published table's masks (the grid's rates are traced, so 16-bit lanes),
with 8- and 32-bit lanes, with philox keys, with the keyed-hash PRNG (`dropjax.prng`; the
study's default), and with dropout replaced by the identity (the floor without masks). Writes
``bench_uci_train[_<platform>].{json,md}`` atomically.
"""

from __future__ import annotations

import argparse
import os
import time

import benchlib
import jax
import jax.numpy as jnp
import numpy as np

from dropjax import masks
from dropjax.data import uci
from experiments.uci import config as uci_config
from experiments.uci import model as regression


def step_rows(dataset: str, data_dir: str | None, epochs: int, repeats: int) -> list[dict]:
  ds = uci.load_uci(dataset, data_dir)
  splits = [uci.uci_split(ds, s, validation=True) for s in range(ds.n_splits)]
  x = jnp.asarray(np.stack([sp.x_train for sp in splits]), jnp.float32)
  y = jnp.asarray(np.stack([sp.y_train for sp in splits]), jnp.float32)
  grid = [(p, t) for p in ds.dropout_rates for t in ds.tau_values]
  rates = jnp.tile(jnp.asarray([p for p, _ in grid], jnp.float32), (len(splits), 1))
  taus = jnp.tile(jnp.asarray([t for _, t in grid], jnp.float32), (len(splits), 1))
  config = uci_config.get_config()  # the study's batch size, optimiser and length scale
  l2 = regression.l2_coefficient(rates, taus, x.shape[1], config.length_scale)
  tx = regression.make_optimizer(config.learning_rate, config.adam_eps)
  batch_size = config.batch_size
  steps = epochs * -(-x.shape[1] // batch_size)
  num_models = len(splits) * len(grid)
  label = (f"{ds.name}: {num_models} models ({len(splits)} splits x {len(grid)} grid points), "
           f"batch {batch_size}, ms per step")

  def timed(impl: str, dropout) -> float:
    root = benchlib.key(0, impl)
    keys = jax.random.split(root, num_models * 2).reshape(len(splits), len(grid), 2)
    shuffle = jax.random.split(jax.random.fold_in(root, 1), len(splits))
    init = lambda k: regression.init_state(k, x.shape[2], ds.n_hidden, tx)
    state = jax.vmap(jax.vmap(init))(keys[..., 0])

    def block(state):
      per_split = jax.vmap(lambda st, dr, p, c, sh, xs, ys: regression.train_epochs(
          st, (sh, dr), xs, ys, p, c, 0, num_epochs=epochs, batch_size=batch_size, tx=tx),
          in_axes=(0, 0, 0, 0, None, None, None))
      return jax.vmap(per_split)(state, keys[..., 1], rates, l2, shuffle, x, y)

    study_dropout = regression.dropout
    regression.dropout = dropout  # the forward reads it when traced
    try:
      with masks.automatic_min_bits(8):  # as the studies draw their masks
        seconds = benchlib.median_seconds(jax.jit(block), state, repeats=repeats)
    finally:
      regression.dropout = study_dropout
    return 1e3 * seconds / steps

  ours = regression.dropout
  with_bits = lambda b: lambda k, h, r, deterministic=False: ours(
      k, h, r, deterministic=deterministic, bits=b)
  variants = [
      ("threefry keys, 16-bit lanes (traced rates; the first published table)", "threefry2x32",
       ours),
      ("8-bit lanes", "threefry2x32", with_bits(8)),
      ("32-bit lanes", "threefry2x32", with_bits(32)),
      ("philox2x32 keys, 16-bit lanes", "philox2x32", ours),
      ("keyed-hash keys (dropjax.prng), 16-bit lanes (the study's)", "keyed_hash", ours),
      ("no masks (dropout = identity)", "threefry2x32", lambda k, h, r, deterministic=False: h),
  ]
  rows = [{"benchmark": label, "variant": name, "ms": timed(impl, fn)}
          for name, impl, fn in variants]
  for r in rows:
    r["ratio"] = r["ms"] / rows[0]["ms"]
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", default="kin8nm")
  parser.add_argument("--data_dir", default=os.environ.get("DROPJAX_DATA_DIR", ""))
  parser.add_argument("--epochs", type=int, default=4)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--out", default="results")
  args = parser.parse_args()
  start = time.perf_counter()
  rows = step_rows(args.dataset, args.data_dir or None, args.epochs, args.repeats)
  meta = benchlib.machine_meta(start)
  caption = (
      f"A training step of the UCI grid ({meta['device']}, {meta['cpus_used']} of "
      f"{meta['cpu_count']} CPUs, jax {meta['jax']}; `python scripts/bench_uci_train.py "
      f"--dataset {args.dataset}`): the median of {args.repeats} compiled blocks of "
      f"{args.epochs} epochs, per step. Ratio: time / threefry's 16-bit lanes.")
  benchlib.write_results(args.out, "bench_uci_train", meta, rows, caption,
                         benchlib.VARIANT_COLUMNS)


if __name__ == "__main__":
  main()
