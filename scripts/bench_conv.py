"""Convolutional training inside compiled loops: XLA's convolution gradients vs `dropjax.conv`.

    python scripts/bench_conv.py [--out results] [--repeats 5]

Three measurements, as ratios within one process (median of timed calls after a warm-up):
  1. One train step of the digits `ConvNet` without dropout (batch 64, Adam): a per-step
     ``jit`` against 20 steps inside one ``lax.scan``, with
     ``jax.lax.conv_general_dilated`` and with `dropjax.conv.conv_general_dilated` as the
     models' convolution.
  2. `fit_ensemble` of 5 MNIST-shaped LeNet-5 members (batch 128): vmapped members
     against mapped ones (``vectorize=False``).
  3. One train step of an MNIST-shaped LeNet-5 (batch 128, with its dropout), per-step
     ``jit`` and inside ``lax.scan``: ``flax.nnx.max_pool`` against
     `dropjax.models.max_pool_2x2` (whose gradient is no select-and-scatter).
Writes ``bench_conv[_<platform>].{json,md}`` atomically.
"""

from __future__ import annotations

import argparse
import time

import benchlib
import jax
import numpy as np
import optax
from flax import nnx

from dropjax import conv
from dropjax.data import Split
from dropjax.models import ConvNet, LeNet5
from dropjax.train import fit_ensemble

SCAN_STEPS = 20


def _step_times(model, x, y, repeats):
  """(seconds of a per-step-jitted train step, seconds per step inside lax.scan)."""
  tx = optax.adam(1e-3)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def step(carry, _):
    params, opt_state = carry

    def loss_fn(p):
      logits = nnx.merge(graphdef, p, rest, copy=True)(x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    grads = jax.grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), None

  carry = (params, tx.init(params))
  one = jax.jit(lambda c: step(c, None)[0])
  scanned = jax.jit(lambda c: jax.lax.scan(step, c, None, length=SCAN_STEPS)[0])
  return (benchlib.median_seconds(lambda: one(carry), repeats=repeats * SCAN_STEPS),
          benchlib.median_seconds(lambda: scanned(carry), repeats=repeats) / SCAN_STEPS)


def _images(size, spatial):
  """``size`` random one-channel ``spatial``-square images with labels, as a `Split`."""
  rng = np.random.default_rng(0)
  return Split(rng.random((size, spatial, spatial, 1), dtype=np.float32),
               rng.integers(0, 10, size).astype(np.int32))


def _rows(name, timings):
  """Rows per (label, (per-step seconds, in-scan seconds)); ratios to the first per-step."""
  rows, baseline = [], None
  for label, (per_step, in_scan) in timings:
    baseline = baseline or per_step
    rows += [{"benchmark": name, "variant": f"{label}, per-step jit", "ms": 1e3 * per_step,
              "ratio": per_step / baseline},
             {"benchmark": name, "variant": f"{label}, inside lax.scan", "ms": 1e3 * in_scan,
              "ratio": in_scan / baseline}]
  return rows


def bench_scanned_steps(repeats):
  x, y = _images(64, 8)
  # No dropout: the convolutions are what is measured.
  make = lambda primitive: ConvNet(1, 10, spatial_size=8, variant="none",
                                   conv_general_dilated=primitive,
                                   rngs=nnx.Rngs(params=0, dropout=0))
  return _rows("ConvNet train step (digits, batch 64), ms per step",
               [(label, _step_times(make(primitive), x, y, repeats))
                for label, primitive in (("jax.lax conv", jax.lax.conv_general_dilated),
                                         ("dropjax.conv", conv.conv_general_dilated))])


def fit_ms_per_step(make, train, keys, *, vectorize, repeats, steps):
  """Milliseconds per training step of `fit_ensemble`, compilation excluded.

  Every `fit_ensemble` call compiles its program; the difference between a 4-epoch and a
  1-epoch fit is 3 epochs of steps alone.
  """
  fit = lambda epochs: fit_ensemble(make, train, keys=keys, epochs=epochs, batch_size=128,
                                    learning_rate=1e-3, vectorize=vectorize)[1]
  one, four = (benchlib.median_seconds(lambda e=e: fit(e), repeats=repeats) for e in (1, 4))
  return 1e3 * (four - one) / (3 * steps)


def bench_ensemble(repeats, members=5, steps=20):
  train = _images(128 * steps, 28)
  make = lambda rngs: LeNet5(10, spatial_size=28, dropout_rate=0.3, rngs=rngs)
  keys = jax.random.split(jax.random.key(0), members)
  name = f"fit_ensemble, {members} LeNet-5 members (MNIST shape, batch 128), ms per step"
  ms = {v: fit_ms_per_step(make, train, keys, vectorize=v, repeats=repeats, steps=steps)
        for v in (True, False)}
  return [{"benchmark": name, "variant": "members vmapped", "ms": ms[True], "ratio": 1.0},
          {"benchmark": name, "variant": "members mapped (vectorize=False)", "ms": ms[False],
           "ratio": ms[False] / ms[True]}]


class _LeNet5FlaxPool(LeNet5):
  """LeNet-5 pooling with ``flax.nnx.max_pool``, as it did before `max_pool_2x2`."""

  def features(self, x):
    pool = lambda h: nnx.max_pool(h, (2, 2), strides=(2, 2))
    h = pool(jax.nn.relu(self.conv1(x)))
    return pool(jax.nn.relu(self.conv2(h))).reshape(x.shape[0], -1)


def bench_pooling(repeats):
  x, y = _images(128, 28)
  make = lambda model: model(10, spatial_size=28, dropout_rate=0.3,
                             rngs=nnx.Rngs(params=0, dropout=1))
  return _rows("LeNet-5 train step (MNIST shape, batch 128), ms per step",
               [(label, _step_times(make(model), x, y, repeats))
                for label, model in (("flax.nnx.max_pool", _LeNet5FlaxPool),
                                     ("max_pool_2x2", LeNet5))])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="results")
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  start = time.perf_counter()
  rows = (bench_scanned_steps(args.repeats) + bench_ensemble(max(1, args.repeats // 2))
          + bench_pooling(args.repeats))
  meta = benchlib.machine_meta(start)
  caption = (f"Convolutions in compiled loops ({meta['device']}, {meta['cpu_count']} CPUs, jax "
             f"{meta['jax']}; `python scripts/bench_conv.py`). Ratio: time / the first row of "
             "the same benchmark.")
  benchlib.write_results(args.out, "bench_conv", meta, rows, caption, benchlib.VARIANT_COLUMNS)


if __name__ == "__main__":
  main()
