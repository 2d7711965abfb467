"""The UCI regression table: grid search per split, then retrain and test, all vmapped.

Workdir layout, per dataset: ``<workdir>/<dataset>/`` holds ``config.json``, a checkpoint
per phase (``validation.npz``, ``final.npz``, written after every segment of epochs),
``validation.json`` (every split x grid point), ``results.json`` and ``splits.csv`` (per
split, with the reference implementation's numbers beside ours). A killed run resumes from
the last checkpoint; finished phases are loaded, not recomputed.
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from dropjax import io, regression
from dropjax.checkpoint import load_checkpoint, save_checkpoint
from dropjax.data import uci
from experiments import reporting

PHASES = {"validation": 0, "final": 1}


def _model_keys(root: jax.Array, phase: str, split: int, grid_index: int) -> jax.Array:
  key = jax.random.fold_in(jax.random.fold_in(root, PHASES[phase]), split)
  return jax.random.fold_in(key, grid_index)


def _train_and_test(
    config: ml_collections.ConfigDict,
    ds: uci.UCIDataset,
    phase: str,
    members: list[tuple[int, int, float, float]],
    workdir: str,
) -> dict[str, Any]:
  """Trains every (split, grid index, p, tau) member in one program; tests each one."""
  root = jax.random.key(config.seed)
  splits = [uci.uci_split(ds, s, validation=(phase == "validation")) for s, _, _, _ in members]
  as_f32 = lambda name: jnp.asarray(np.stack([getattr(sp, name) for sp in splits]), jnp.float32)
  x_train, y_train, x_test = as_f32("x_train"), as_f32("y_train"), as_f32("x_test")
  y_mean = jnp.asarray([sp.y_mean for sp in splits], jnp.float32)
  y_std = jnp.asarray([sp.y_std for sp in splits], jnp.float32)
  y_test = as_f32("y_test") * y_std[:, None] + y_mean[:, None]  # original units
  rates = jnp.asarray([m[2] for m in members], jnp.float32)
  taus = jnp.asarray([m[3] for m in members], jnp.float32)
  n_train = x_train.shape[1]
  l2 = regression.l2_coefficient(rates, taus, n_train, config.length_scale)
  keys = jnp.stack([_model_keys(root, phase, s, g) for s, g, _, _ in members])
  streams = jax.vmap(lambda k: jax.random.split(k, 4))(keys)  # init, shuffle, dropout, mc
  tx = regression.make_optimizer(config.learning_rate, config.adam_eps)
  state = jax.vmap(lambda k: regression.init_state(k, ds.inputs.shape[1], ds.n_hidden, tx))(
      streams[:, 0])

  total_epochs = ds.n_epochs * config.epochs_multiplier
  checkpoint = os.path.join(workdir, f"{phase}.npz")
  epoch, train_seconds = 0, 0.0
  if os.path.exists(checkpoint):
    trees, meta = load_checkpoint(checkpoint, {"state": state})
    state, epoch, train_seconds = trees["state"], meta["epoch"], meta["train_seconds"]
    logging.info("%s %s: resuming at epoch %d/%d", ds.name, phase, epoch, total_epochs)

  def segment(state, first_epoch, num_epochs):
    return jax.vmap(
        lambda st, sh, dr, x, y, p, c: regression.train_epochs(
            st, (sh, dr), x, y, p, c, first_epoch, num_epochs=num_epochs,
            batch_size=config.batch_size, tx=tx)
    )(state, streams[:, 1], streams[:, 2], x_train, y_train, rates, l2)

  run_segment = jax.jit(segment, static_argnums=2)
  start = time.perf_counter()
  while epoch < total_epochs:
    tic = time.perf_counter()
    length = min(config.segment_epochs, total_epochs - epoch)
    state, losses = run_segment(state, epoch, length)
    jax.block_until_ready(state)
    epoch += length
    train_seconds += time.perf_counter() - tic
    save_checkpoint(checkpoint, {"state": state},
                    {"epoch": epoch, "train_seconds": train_seconds})
    elapsed = time.perf_counter() - start
    logging.info("%s %s: epoch %d/%d, mean loss %.4f, ETA %.0fs", ds.name, phase, epoch,
                 total_epochs, float(losses[:, -1].mean()),
                 elapsed / epoch * (total_epochs - epoch) if epoch else 0.0)

  tic = time.perf_counter()
  stats = jax.jit(jax.vmap(
      lambda p, k, x, y, r, t, m, s: regression.mc_regression_stats(
          p, k, x, y, r, t, m, s, num_samples=config.mc_samples,
          chunk_size=config.mc_chunk_size)
  ))(state.params, streams[:, 3], x_test, y_test, rates, taus, y_mean, y_std)
  jax.block_until_ready(stats)
  return {
      "mc_rmse": np.asarray(stats.mc_rmse).tolist(),
      "log_likelihood": np.asarray(stats.log_likelihood).tolist(),
      "weight_scaling_rmse": np.asarray(stats.weight_scaling_rmse).tolist(),
      "train_seconds": train_seconds,
      "test_seconds": time.perf_counter() - tic,
  }


def _mean_se(values) -> tuple[float, float]:
  values = np.asarray(values, np.float64)
  return float(values.mean()), float(values.std() / np.sqrt(len(values)))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs the protocol on ``config.dataset``; returns the aggregated results."""
  data_dir = config.data_dir or None
  ds = uci.load_uci(config.dataset, data_dir)
  workdir = os.path.join(workdir, ds.name)
  reporting.start_workdir(config, workdir)
  results_path = os.path.join(workdir, "results.json")
  finished = reporting.load_json(results_path)
  if finished is not None:
    logging.info("%s: loaded the finished result from %s", ds.name, results_path)
    return finished
  start = time.perf_counter()
  n_splits = ds.n_splits if config.num_splits <= 0 else min(config.num_splits, ds.n_splits)
  splits = list(range(n_splits))
  # p-major, tau-minor: the reference code's loop order, which decides ties.
  grid = [(p, t) for p in ds.dropout_rates for t in ds.tau_values]

  validation_path = os.path.join(workdir, "validation.json")
  validation = reporting.load_json(validation_path)
  if validation is None:
    members = [(s, g, p, t) for s in splits for g, (p, t) in enumerate(grid)]
    validation = _train_and_test(config, ds, "validation", members, workdir)
    validation["members"] = members
    io.write_json_atomic(validation_path, validation)
  val_ll = np.asarray(validation["log_likelihood"]).reshape(n_splits, len(grid))
  chosen = [int(np.argmax(row)) for row in val_ll]  # first maximum on ties

  final_members = [(s, 0, *grid[g]) for s, g in zip(splits, chosen, strict=True)]
  final = _train_and_test(config, ds, "final", final_members, workdir)

  reference = uci.load_reference_results(ds.name, data_dir)
  rows = []
  for i, s in enumerate(splits):
    row = {"split": s, "rate": grid[chosen[i]][0], "tau": grid[chosen[i]][1],
           "mc_rmse": final["mc_rmse"][i], "log_likelihood": final["log_likelihood"][i],
           "weight_scaling_rmse": final["weight_scaling_rmse"][i]}
    if reference is not None:
      row |= {"reference_rate": float(reference.rate[s]), "reference_tau": float(reference.tau[s]),
              "reference_mc_rmse": float(reference.mc_rmse[s]),
              "reference_log_likelihood": float(reference.log_likelihood[s])}
    rows.append(row)
  io.write_csv_atomic(os.path.join(workdir, "splits.csv"), rows)
  summary = {
      "dataset": ds.name, "n_splits": n_splits,
      "epochs": ds.n_epochs * config.epochs_multiplier, "mc_samples": config.mc_samples,
      "mc_rmse": _mean_se(final["mc_rmse"]),
      "log_likelihood": _mean_se(final["log_likelihood"]),
      "weight_scaling_rmse": _mean_se(final["weight_scaling_rmse"]),
      "seconds": {"validation_train": validation["train_seconds"],
                  "validation_test": validation["test_seconds"],
                  "final_train": final["train_seconds"], "final_test": final["test_seconds"],
                  "this_invocation": time.perf_counter() - start},
      "rows": rows,
  }
  if reference is not None:
    summary["reference_2018"] = {"mc_rmse": reference.summary["MC errors"],
                                 "log_likelihood": reference.summary["lls"]}
  io.write_json_atomic(results_path, summary)
  logging.info("%s: MC RMSE %.4f +- %.4f, LL %.4f +- %.4f, WS RMSE %.4f", ds.name,
               *summary["mc_rmse"], *summary["log_likelihood"], summary["weight_scaling_rmse"][0])
  return summary
