"""Concrete dropout on the UCI protocol: learned rates against the grid-searched ones.

The MC-dropout network of the UCI table with its two dropout rates learned (Gal, Hron &
Kendall 2017) and a heteroscedastic head, so neither p nor tau is searched: one model per
split, trained on the whole training split, all splits as one vmapped program; then the
same 10,000-sample test as the grid search. When the grid-search run of the same dataset
is in ``config.grid_workdir``, each split's learned rates sit beside the chosen p.

Workdir per dataset: ``config.json``, ``data.json``, ``checkpoints/`` (orbax: ``train`` per
segment, ``test``), ``results.json``, ``results.md`` and ``results.csv`` (per split).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from dropjax import prng
from dropjax.data import uci
from dropjax.train import init_train_state
from experiments import config_checks, reporting, study
from experiments.uci import model as regression
from experiments.uci import study as uci_study
from experiments.uci.study import map_models_resumably, train_in_segments


def check_config(config: ml_collections.ConfigDict) -> None:
  """The UCI rules (`experiments.uci.check_config`); the initial rate must be in (0, 1).

  Args:
    config: a ``uci_concrete`` config.

  Raises:
    config_checks.ConfigError: naming the field and the allowed values.
  """
  uci_study.check_config(config)
  config_checks.check_initial_rate(config)


def learned_rates(params: Any) -> dict[str, np.ndarray]:
  """Every split's learned rates (``params`` stacked over splits), by layer in the order
  of `regression.CONCRETE_RATES` (a vmapped dict comes back with its keys sorted)."""
  rates = jax.vmap(regression.concrete_rates)(params)
  names = regression.CONCRETE_RATES[regression.has_separate_heads(params)]
  return {name: np.asarray(rates[name]) for name in names}


def train_and_evaluate(config: ml_collections.ConfigDict, sections: study.Sections
                       ) -> study.Report:
  """Trains and tests concrete dropout on every split of ``config.dataset``."""
  ds = sections.data
  summary = sections("results", lambda: _train_and_test(config, ds, sections.folder))
  columns = (*((f"rate_{name}", f"learned p ({name})", ".4f") for name in summary["rate_names"]),
             ("mc_rmse", "RMSE", ".4g"), ("log_likelihood", "LL", ".4f"),
             ("coverage_0.95", "95% PI coverage", ".3f"))
  return study.Report(summary=summary,
                      markdown=uci_study.dataset_report(summary, columns, "uci_concrete"),
                      rows=summary["rows"])


STUDY = study.Study("uci_concrete", train_and_evaluate, subfolder=uci_study.dataset_folder,
                    load_data=uci_study.load_dataset)


def _train_and_test(config: ml_collections.ConfigDict, ds: uci.UCIDataset,
                    workdir: str) -> dict[str, Any]:
  n_splits = ds.n_splits if config.num_splits <= 0 else min(config.num_splits, ds.n_splits)
  splits = [uci.uci_split(ds, s) for s in range(n_splits)]
  stack = lambda name: jnp.asarray(np.stack([getattr(sp, name) for sp in splits]), jnp.float32)
  x_train, y_train, x_test = stack("x_train"), stack("y_train"), stack("x_test")
  y_mean = jnp.asarray([sp.y_mean for sp in splits], jnp.float32)
  y_std = jnp.asarray([sp.y_std for sp in splits], jnp.float32)
  y_test = stack("y_test") * y_std[:, None] + y_mean[:, None]
  n_train = x_train.shape[1]

  root = prng.key(config.seed, config.prng_impl)
  streams = jax.vmap(lambda s: jax.random.split(jax.random.fold_in(root, s), 4))(
      jnp.arange(n_splits))  # init, shuffle, dropout, mc
  tx = regression.make_optimizer(config.learning_rate)
  loss_fn = regression.concrete_loss(n_train, config.length_scale, config.temperature)

  def init(key):
    params = regression.init_concrete_regressor(key, ds.inputs.shape[1], ds.n_hidden,
                                                config.init_rate,
                                                separate_heads=config.separate_heads)
    return init_train_state(params, tx)

  state = jax.vmap(init)(streams[:, 0])
  mesh = study.model_mesh(config)

  def splits_block(per_split, first_epoch, num_epochs):
    return jax.vmap(lambda st, sh, dr, x, y: regression.train_epochs_with_loss(
        st, (sh, dr), x, y, loss_fn, first_epoch, num_epochs=num_epochs,
        batch_size=config.batch_size, tx=tx))(*per_split)

  def segment(state, first_epoch, num_epochs):
    return study.shard_models(functools.partial(splits_block, num_epochs=num_epochs), mesh)(
        (state, streams[:, 1], streams[:, 2], x_train, y_train), first_epoch)

  total_epochs = ds.n_epochs * config.epochs_multiplier
  state, train_seconds, history = train_in_segments(
      jax.jit(segment, static_argnums=2), state,
      checkpoint=os.path.join(workdir, "checkpoints", "train"), total_epochs=total_epochs,
      segment_epochs=config.segment_epochs, label=f"{ds.name} concrete",
      # Mean learned rates over splits, in the order of regression.CONCRETE_RATES.
      record=lambda st: [float(np.mean(r)) for r in learned_rates(st.params).values()])

  def test_split(inputs):
    params, key, x, y, m, s = inputs
    return regression.mc_concrete_stats(params, key, x, y, m, s, temperature=config.temperature,
                                        num_samples=config.mc_samples,
                                        chunk_size=config.mc_chunk_size,
                                        vectorize=config.mc_vectorize)

  stats, test_seconds = map_models_resumably(
      test_split, (state.params, streams[:, 3], x_test, y_test, y_mean, y_std),
      checkpoint=os.path.join(workdir, "checkpoints", "test"), label=f"{ds.name} concrete test",
      mesh=mesh)
  rates = learned_rates(state.params)

  grid = reporting.load_json(os.path.join(config.grid_workdir, ds.name, "results.json")) \
      if config.grid_workdir else None
  rows = []
  for s in range(n_splits):
    row = {"split": s, **{f"rate_{name}": float(r[s]) for name, r in rates.items()},
           "mc_rmse": float(stats.mc_rmse[s]), "log_likelihood": float(stats.log_likelihood[s]),
           "coverage_0.95": float(stats.coverage[s][-1])}
    if grid is not None:
      g = grid["rows"][s]
      row |= {"grid_rate": g["rate"], "grid_tau": g["tau"], "grid_mc_rmse": g["mc_rmse"],
              "grid_log_likelihood": g["log_likelihood"]}
    rows.append(row)
  summary = {
      "dataset": ds.name, "n_splits": n_splits, "epochs": total_epochs,
      "mc_samples": config.mc_samples,
      "rate_names": list(rates),
      **{f"rate_{name}": reporting.mean_se(r) for name, r in rates.items()},
      "mc_rmse": reporting.mean_se(stats.mc_rmse),
      "log_likelihood": reporting.mean_se(stats.log_likelihood),
      "weight_scaling_rmse": reporting.mean_se(stats.weight_scaling_rmse),
      "coverage_0.95": reporting.mean_se(np.asarray(stats.coverage)[:, -1]),
      "seconds": {"train": train_seconds, "test": test_seconds},
      # One entry per training segment: the epochs trained and the mean rates over
      # splits then, in rate_names' order.
      "rate_history": history,
      "rows": rows,
  }
  if grid is not None:
    grid_rates = [r["rate"] for r in grid["rows"][:n_splits]]
    summary["grid"] = {"rate": reporting.mean_se(grid_rates),
                       "mc_rmse": grid["mc_rmse"], "log_likelihood": grid["log_likelihood"]}
  logging.info("%s concrete: RMSE %.4f, LL %.4f, rates %s", ds.name, summary["mc_rmse"][0],
               summary["log_likelihood"][0],
               {name: round(summary[f"rate_{name}"][0], 4) for name in rates})
  return summary
