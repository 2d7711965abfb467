"""Benchmarks against Flax's own dropout: train-step overhead, MC sampling, the UCI grid.

    python scripts/bench.py [--out results] [--quick]

Everything is measured in one process and reported as ratios (the machines are shared and
noisy): the median of repeated timed calls after a warm-up call. Writes
``bench_suite[_<platform>].{json,md}`` atomically. The op-throughput table is
`scripts/bench_ops.py`.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time

import benchlib
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from dropjax.layers import reseed
from dropjax.mc import automatic_chunk_size, mc_sample, module_forward
from dropjax.models import MLP, TransformerBlock

# The UCI network is a study's code (experiments/uci/model.py), beside the library.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments.uci import model as regression


class FlaxMLP(nnx.Module):
  """The same MLP with `flax.nnx.Dropout`."""

  def __init__(self, sizes, input_rate, hidden_rate, rngs):
    self.denses = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in itertools.pairwise(sizes)])
    rates = [input_rate] + [hidden_rate] * (len(sizes) - 2)
    self.drops = nnx.List([nnx.Dropout(r, rngs=rngs) for r in rates])

  def __call__(self, x, rngs=None):
    n = len(self.drops)
    keys = [None] * n if rngs is None else list(jax.random.split(rngs, n))
    for i, (drop, dense) in enumerate(zip(self.drops, self.denses, strict=True)):
      x = dense(drop(x, rngs=keys[i]))
      if i < len(self.denses) - 1:
        x = jax.nn.relu(x)
    return x


def _train_step_time(model, x, y, repeats, reseed_layers, impl="threefry2x32"):
  optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer, x, y, key):
    if reseed_layers:
      reseed(model, key)

    def loss_fn(model):
      return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  fn = nnx.cached_partial(step, model, optimizer)
  counter = iter(range(10**9))
  root = jax.random.key(0, impl=impl)
  return benchlib.median_seconds(
      lambda: fn(x, y, jax.random.fold_in(root, next(counter))), repeats=repeats)


def bench_train_steps(repeats):
  rows = []
  x = jax.random.normal(jax.random.key(0), (128, 784))
  y = jax.random.randint(jax.random.key(1), (128,), 0, 10)
  sizes = [784, 1024, 1024, 10]
  none = _train_step_time(MLP(784, [1024, 1024], 10, input_rate=0.0, hidden_rate=0.0,
                              rngs=nnx.Rngs(0)), x, y, repeats, False)
  ours = _train_step_time(MLP(784, [1024, 1024], 10, input_rate=0.2, hidden_rate=0.5,
                              rngs=nnx.Rngs(0)), x, y, repeats, True)
  flax = _train_step_time(FlaxMLP(sizes, 0.2, 0.5, nnx.Rngs(0)), x, y, repeats, False)
  # Philox keys: on XLA:CPU jax.random.bits is several times faster than with threefry.
  philox = "philox2x32"
  ours_philox = _train_step_time(MLP(784, [1024, 1024], 10, input_rate=0.2, hidden_rate=0.5,
                                     rngs=nnx.Rngs(0)), x, y, repeats, True, philox)
  flax_philox = _train_step_time(
      FlaxMLP(sizes, 0.2, 0.5, nnx.Rngs(jax.random.key(0, impl=philox))), x, y, repeats, False)
  for name, t in (("no dropout", none), ("dropjax", ours), ("flax.nnx.Dropout", flax),
                  (f"dropjax, {philox} keys", ours_philox),
                  (f"flax.nnx.Dropout, {philox} keys", flax_philox)):
    rows.append({"benchmark": "train step, MLP 784-1024-1024-10, batch 128", "variant": name,
                 "ms": 1e3 * t, "ratio": t / none})

  tokens = jax.random.normal(jax.random.key(2), (32, 64, 128))

  class Head(nnx.Module):
    def __init__(self, rate, rngs):
      self.block = TransformerBlock(128, 4, 256, attention_rate=rate, ffn_rate=rate,
                                    residual_rate=rate, rngs=rngs)
      self.out = nnx.Linear(128, 10, rngs=rngs)

    def __call__(self, x):
      return self.out(self.block(x).mean(1))

  labels = jax.random.randint(jax.random.key(3), (32,), 0, 10)
  base = _train_step_time(Head(0.0, nnx.Rngs(0)), tokens, labels, repeats, False)
  with_dropout = _train_step_time(Head(0.1, nnx.Rngs(0)), tokens, labels, repeats, True)
  for name, t in (("no dropout", base), ("dropjax", with_dropout)):
    rows.append({"benchmark": "train step, Transformer block 128d/4 heads, 32x64 tokens",
                 "variant": name, "ms": 1e3 * t, "ratio": t / base})
  return rows


def bench_mc(repeats, samples=100, input_rate=0.2):
  """MC sampling against a Python loop of a jitted forward (the common tutorial pattern).

  With ``input_rate=0`` the first layer is deterministic and `mc_sample` computes it once
  (vmap batches only what depends on the key); with input dropout nothing is shared.
  """
  x = jax.random.normal(jax.random.key(0), (1000, 784))
  key = jax.random.key(1)
  model = MLP(784, [1024, 1024], 10, input_rate=input_rate, hidden_rate=0.5, rngs=nnx.Rngs(0))
  forward = module_forward(model)
  single = jax.jit(forward)

  def loop():
    return jnp.stack([single(jax.random.fold_in(key, i), x) for i in range(samples)])

  name = (f"MC sampling, S={samples}, MLP 784-1024-1024-10, 1000 inputs, input rate "
          f"{input_rate}")
  rows = []
  loop_t = benchlib.median_seconds(loop, repeats=repeats)
  automatic = automatic_chunk_size(forward, key, x, samples)
  for chunk in (None, samples, 25, 10):
    fn = jax.jit(lambda k, x, c=chunk: mc_sample(forward, k, x, samples, chunk_size=c))
    t = benchlib.median_seconds(lambda fn=fn: fn(key, x), repeats=repeats)
    label = f"automatic chunk: {automatic}" if chunk is None else f"chunk {chunk}"
    rows.append({"benchmark": name, "variant": f"dropjax mc_sample ({label})",
                 "ms": 1e3 * t, "ratio": t / loop_t})
  if input_rate > 0:
    flax_model = FlaxMLP([784, 1024, 1024, 10], input_rate, 0.5, nnx.Rngs(0))
    graphdef, state = nnx.split(flax_model)
    flax_forward = lambda k, x: nnx.merge(graphdef, state, copy=True)(x, rngs=k)
    flax_fn = jax.jit(lambda k, x: mc_sample(flax_forward, k, x, samples, chunk_size=samples))
    flax_t = benchlib.median_seconds(lambda: flax_fn(key, x), repeats=repeats)
    rows.append({"benchmark": name, "variant": "flax.nnx.Dropout, vmapped keys",
                 "ms": 1e3 * flax_t, "ratio": flax_t / loop_t})
  rows.append({"benchmark": name, "variant": "Python loop of a jitted forward",
               "ms": 1e3 * loop_t, "ratio": 1.0})
  return rows


def bench_uci_grid(repeats, models=240, epochs=20):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(364, 13)), jnp.float32)  # Boston's grid-search size
  y = jnp.asarray(rng.normal(size=364), jnp.float32)
  tx = regression.make_optimizer(1e-3)
  keys = jax.random.split(jax.random.key(0), models)
  rates = jnp.tile(jnp.array([0.005, 0.01, 0.05, 0.1]), models // 4)
  l2 = jnp.full(models, 1e-6)
  states = jax.vmap(lambda k: regression.init_state(k, 13, 50, tx))(keys)

  def train(state, k, r, c):
    return regression.train_epochs(state, (k, k), x, y, r, c, 0, num_epochs=epochs,
                                   batch_size=128, tx=tx)[0]

  vmapped = jax.jit(jax.vmap(train))
  t_vmap = benchlib.median_seconds(lambda: vmapped(states, keys, rates, l2), repeats=repeats)
  single = jax.jit(train)
  sequential_models = 12  # timed on a subset, scaled to all models
  pick = lambda i: jax.tree.map(lambda a: a[i], states)
  t_seq = benchlib.median_seconds(
      lambda: [single(pick(i), keys[i], rates[i], l2[i]) for i in range(sequential_models)],
      repeats=max(1, repeats // 2)) * models / sequential_models
  name = f"UCI protocol: {models} Boston-sized models x {epochs} epochs"
  return [{"benchmark": name, "variant": "one vmapped program", "ms": 1e3 * t_vmap,
           "ratio": t_vmap / t_seq},
          {"benchmark": name, "variant": "sequential loop of jitted models", "ms": 1e3 * t_seq,
           "ratio": 1.0}]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="results")
  parser.add_argument("--repeats", type=int, default=50)
  args = parser.parse_args()
  start = time.perf_counter()
  rows = (bench_train_steps(args.repeats) + bench_mc(max(3, args.repeats // 10))
          + bench_mc(max(3, args.repeats // 10), input_rate=0.0) + bench_uci_grid(3))
  meta = benchlib.machine_meta(start)
  caption = (f"Benchmarks ({meta['device']}, {meta['cpu_count']} CPUs, jax {meta['jax']}; "
             "`python scripts/bench.py`). Ratio: time / the baseline row of the same benchmark "
             "(no dropout; the Python loop; the sequential loop).")
  benchlib.write_results(args.out, "bench_suite", meta, rows, caption, benchlib.VARIANT_COLUMNS)

if __name__ == "__main__":
  main()
