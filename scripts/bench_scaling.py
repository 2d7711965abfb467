"""Scaling over simulated devices: an ensemble's members, MC samples and the UCI grid's
240 models over 1, 2, 4, 8.

Each device count runs in its own process (``--xla_force_host_platform_device_count``).
Simulated devices share this machine's cores, so the ratios show the overhead of sharding
(partitioning, per-device dispatch), not the speed-up of real devices. The ensemble has 8
members: `fit_ensemble` needs a member count that the device count divides.

  python scripts/bench_scaling.py [--data_dir ../shared/data]  -> results/bench_scaling.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import benchlib

from dropjax.data.paths import resolve_data_dir

# The UCI grid is a study's program (experiments/uci/study.py), beside the library.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_MEMBERS, _SAMPLES = 8, 64


def _uci_grid(devices: int, data_dir: str) -> dict[str, float]:
  """The grid-search phase of UCI Yacht: 20 splits x 12 grid points, trained (ms per epoch)
  and tested with 100 MC samples each (ms, its compile loaded from the cache), over
  ``devices``."""
  import numpy as np

  from dropjax.data import uci
  from experiments.uci import config as uci_config
  from experiments.uci import study as uci_study

  ds = uci.load_uci("yacht", data_dir)
  grid = [(p, t) for p in ds.dropout_rates for t in ds.tau_values]
  splits = list(range(ds.n_splits))
  tile = lambda values: np.tile(values, (len(splits), 1))

  def run(multiplier):
    # The settings of the committed table (results/bench_scaling.md), drawn before the UCI
    # study's defaults became the keyed hash and mapped samples.
    config = uci_config.get_config("threefry")
    config.update(dataset="yacht", data_dir=data_dir, epochs_multiplier=multiplier,
                  segment_epochs=5 * ds.n_epochs, mc_samples=100, devices=devices)
    with tempfile.TemporaryDirectory() as workdir:
      return uci_study._train_and_test(
          config, ds, "validation", splits, tile(np.arange(len(grid))),
          tile([p for p, _ in grid]), tile([t for _, t in grid]), workdir)

  # Each call traces its programs anew; a persistent cache filled by a first call turns the
  # later calls' compiles into loads, so the difference of two calls is their epochs.
  import jax

  jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp())
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  run(5)
  short, long = run(5), run(15)
  per_epoch = (long["train_seconds"] - short["train_seconds"]) / (10 * ds.n_epochs)
  return {"uci_epoch_ms": 1e3 * per_epoch, "uci_test_ms": 1e3 * long["test_seconds"],
          "uci_models": len(splits) * len(grid)}


def _child(devices: int, epochs: int, repeats: int, data_dir: str) -> dict[str, float]:
  import jax
  import jax.numpy as jnp
  import numpy as np
  from flax import nnx
  from jax.sharding import Mesh

  from dropjax.data import load_digits
  from dropjax.mc import mc_predict, module_forward
  from dropjax.models import MLP
  from dropjax.train import fit_ensemble

  assert len(jax.devices()) == devices
  data = load_digits()
  train = data.train._replace(images=data.train.images.reshape(len(data.train.labels), -1))
  make = lambda rngs: MLP(64, [256, 256], 10, input_rate=0.2, hidden_rate=0.5, rngs=rngs)
  members = Mesh(np.asarray(jax.devices()), ("members",))
  keys = jax.random.split(jax.random.key(0), _MEMBERS)

  def train_seconds(num_epochs):
    tic = time.perf_counter()
    fit_ensemble(make, train, keys=keys, epochs=num_epochs, batch_size=64,
                 learning_rate=1e-3, mesh=members)
    return time.perf_counter() - tic

  # Each call compiles; the difference leaves the epochs alone.
  per_epoch = (train_seconds(epochs + 1) - train_seconds(1)) / epochs

  forward = module_forward(make(nnx.Rngs(params=0, dropout=0)))
  x = jnp.asarray(data.test.images.reshape(len(data.test.labels), -1))
  samples = Mesh(np.asarray(jax.devices()), ("samples",))
  predict = jax.jit(lambda f, k, x: mc_predict(f, k, x, _SAMPLES, mesh=samples))
  predict(forward, jax.random.key(1), x).block_until_ready()
  times = []
  for i in range(repeats):
    tic = time.perf_counter()
    predict(forward, jax.random.key(i), x).block_until_ready()
    times.append(time.perf_counter() - tic)
  return {"ensemble_epoch_ms": 1e3 * per_epoch, "mc_ms": 1e3 * float(np.median(times)),
          **_uci_grid(devices, data_dir)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="results")
  parser.add_argument("--epochs", type=int, default=5)
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--device_counts", default="1,2,4,8")
  parser.add_argument("--data_dir", default=None, help="default: $DROPJAX_DATA_DIR")
  parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
  args = parser.parse_args()
  data_dir = resolve_data_dir(args.data_dir, "UCI")
  if args.child:
    print(json.dumps(_child(args.child, args.epochs, args.repeats, data_dir)))
    return
  start = time.perf_counter()
  measured = {}
  for n in map(int, args.device_counts.split(",")):
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
    out = subprocess.run([sys.executable, __file__, "--child", str(n), "--epochs",
                          str(args.epochs), "--repeats", str(args.repeats), "--data_dir",
                          data_dir],
                         env=env, capture_output=True, text=True, check=True)
    measured[n] = json.loads(out.stdout.strip().splitlines()[-1])
  base = measured[min(measured)]
  rows = []
  for name, key in ((f"fit_ensemble, {_MEMBERS} MLP members (64-256-256-10, digits), ms per "
                     "epoch", "ensemble_epoch_ms"),
                    (f"mc_predict, S = {_SAMPLES}, 450 digits, same MLP, ms", "mc_ms"),
                    (f"UCI grid, Yacht: {base['uci_models']} models (20 splits x 12 grid "
                     "points), training, ms per epoch", "uci_epoch_ms"),
                    (f"UCI grid, Yacht: test of the {base['uci_models']} models, 100 MC "
                     "samples each, ms", "uci_test_ms")):
    for n, values in measured.items():
      rows.append({"benchmark": name, "devices": n, "ms": values[key],
                   "ratio": values[key] / base[key]})
  meta = benchlib.machine_meta(start)
  caption = (f"Scaling over simulated devices ({meta['device']}, {meta['cpu_count']} CPUs "
             f"shared by every device, jax {meta['jax']}; `python scripts/bench_scaling.py`). "
             "Ratio: time / one device. The devices share the cores, so this measures what "
             "sharding costs, not what real devices gain.")
  columns = [("benchmark", "benchmark", "s"), ("devices", "devices", "d"), ("ms", "ms", ".1f"),
             ("ratio", "ratio", ".2f")]
  benchlib.write_results(args.out, "bench_scaling", meta, rows, caption, columns)


if __name__ == "__main__":
  main()
