"""The UCI regression table: grid search per split, then retrain and test, all vmapped.

Workdir layout, per dataset: ``<workdir>/<dataset>/`` holds ``config.json`` and
``data.json`` (the SHA-256 of every data file: a resume on other data is refused), an orbax
checkpoint per phase under ``checkpoints/`` (``validation``, ``final``, written after every
segment of epochs; ``validation_test``, ``final_test``, the test pass so far),
``validation.json`` (every split x grid point), ``results.json`` and ``results.csv`` (per
split, with the reference implementation's numbers beside ours). A killed run resumes from
the last checkpoint; finished phases are loaded, not recomputed.

``config.devices`` shards the models over local devices (`study.model_mesh`): training by
split (a split's grid points share its data and batch order), the test one model per
device. Each model's keys do not depend on the device count, so the grid choices are the
same and the numbers agree to float rounding (tested); a run may resume on another count.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import Mesh

from dropjax import prng
from dropjax.checkpoint import checkpoint_exists, load_checkpoint, save_checkpoint
from dropjax.data import uci
from experiments import config_checks, reporting, study
from experiments.uci import model as regression
from experiments.uci import reference as uci_reference

PHASES = {"validation": 0, "final": 1}


def _split_keys(root: jax.Array, phase: str, split: int) -> tuple[jax.Array, jax.Array]:
  """(shuffle key shared by the split's grid points, root of its members' keys)."""
  key = jax.random.fold_in(jax.random.fold_in(root, PHASES[phase]), split)
  shuffle, members = jax.random.split(key)
  return shuffle, members


def train_in_segments(
    run_segment: Callable[[Any, int, int], tuple[Any, jax.Array]],
    state: Any,
    *,
    checkpoint: str,
    total_epochs: int,
    segment_epochs: int,
    label: str,
    record: Callable[[Any], Any] | None = None,
) -> tuple[Any, float, list[Any]]:
  """Trains ``state`` to ``total_epochs`` in compiled segments, checkpointing after each.

  ``run_segment(state, first_epoch, num_epochs) -> (state, losses)``. A checkpoint found at
  ``checkpoint`` is resumed from. ``record(state)``, if given, is called after every
  segment and kept as ``{"epoch": epochs trained, "value": record(state)}`` in the
  checkpoint, so the records survive a resume (even one with another segment length).

  Returns:
    ``(state, training seconds over all invocations, records)``.
  """
  epoch, train_seconds, history = 0, 0.0, []
  if checkpoint_exists(checkpoint):
    trees, meta = load_checkpoint(checkpoint, {"state": state})
    state, epoch, train_seconds = trees["state"], meta["epoch"], meta["train_seconds"]
    # Checkpoints written before records were kept have none.
    history = meta.get("history", [])
    logging.info("%s: resuming at epoch %d/%d", label, epoch, total_epochs)
  start, first = time.perf_counter(), epoch
  while epoch < total_epochs:
    tic = time.perf_counter()
    length = min(segment_epochs, total_epochs - epoch)
    state, losses = run_segment(state, epoch, length)
    jax.block_until_ready(state)
    # Training curve: each epoch's loss, averaged over the models trained together.
    study.write_curves({"loss": np.asarray(losses).reshape(-1, length).mean(0)},
                       name=label.replace(" ", "-"), steps=range(epoch + 1, epoch + length + 1))
    epoch += length
    train_seconds += time.perf_counter() - tic
    if record is not None:
      history.append({"epoch": epoch, "value": record(state)})
    save_checkpoint(checkpoint, {"state": state},
                    {"epoch": epoch, "train_seconds": train_seconds, "history": history})
    elapsed = time.perf_counter() - start
    logging.info("%s: epoch %d/%d, mean loss %.4f, ETA %.0fs%s", label, epoch, total_epochs,
                 float(losses[..., -1].mean()),
                 elapsed / (epoch - first) * (total_epochs - epoch),
                 f", recorded {history[-1]}" if record is not None else "")
  return state, train_seconds, history


def _fingerprint(tree: Any) -> str:
  """SHA-256 of every leaf's bytes (PRNG keys by their key data)."""
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(tree):
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      leaf = jax.random.key_data(leaf)
    digest.update(np.ascontiguousarray(jax.device_get(leaf)).tobytes())
  return digest.hexdigest()


def map_models_resumably(
    fn: Callable[[Any], Any],
    models: Any,
    *,
    checkpoint: str,
    label: str,
    min_save_seconds: float = 30.0,
    mesh: Mesh | None = None,
) -> tuple[Any, float]:
  """``lax.map(fn, models)``, one compiled call per model, resumable between models.

  A 10,000-sample test of the 60 Protein grid models takes over half an hour on 2 CPUs;
  a kill no longer loses it. Results so far are checkpointed (atomically) at most every
  ``min_save_seconds`` and after the last model; a checkpoint found at ``checkpoint`` is
  resumed from. Each model's result depends only on that model, so a resumed pass returns
  what an uninterrupted one does. With a `study.model_mesh`, each call tests one model per
  device (`study.shard_models`).

  Returns:
    ``(results stacked over models, seconds spent over all invocations)``.
  """
  num_models = jax.tree.leaves(models)[0].shape[0]
  one = jax.jit(fn)
  template = jax.eval_shape(one, jax.tree.map(lambda a: a[0], models))
  fingerprint = _fingerprint(models)
  done, seconds = [], 0.0
  if checkpoint_exists(checkpoint):
    stacked = jax.tree.map(lambda s: np.zeros((num_models, *s.shape), s.dtype), template)
    trees, meta = load_checkpoint(checkpoint, {"results": stacked})
    if meta["models"] == fingerprint:
      seconds = meta["seconds"]
      done = [jax.tree.map(lambda a, i=i: a[i], trees["results"]) for i in range(meta["done"])]
      logging.info("%s: resuming at model %d/%d", label, len(done), num_models)
    else:  # e.g. the models were retrained after their checkpoint was removed
      logging.info("%s: %s holds results of other models; starting over", label, checkpoint)

  def save():
    padding = [jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), template)] * (
        num_models - len(done))
    stacked = jax.tree.map(lambda *a: np.stack(a), *done, *padding)
    save_checkpoint(checkpoint, {"results": stacked},
                    {"done": len(done), "seconds": seconds, "models": fingerprint})

  group = 1 if mesh is None else mesh.size
  if mesh is not None:  # one model per device, each as `one` tests it
    per_device = lambda m: jax.tree.map(lambda a: a[None], fn(jax.tree.map(lambda a: a[0], m)))
    one_per_device = jax.jit(study.shard_models(per_device, mesh))

  last_save = time.perf_counter()
  for index in range(len(done), num_models, group):
    tic = time.perf_counter()
    if mesh is None:
      done.append(jax.device_get(one(jax.tree.map(lambda a, i=index: a[i], models))))
    else:
      out = jax.device_get(one_per_device(
          jax.tree.map(lambda a, i=index: a[i:i + group], models)))
      done += [jax.tree.map(lambda a, j=j: a[j], out) for j in range(len(jax.tree.leaves(out)[0]))]
    now = time.perf_counter()
    seconds += now - tic
    if now - last_save >= min_save_seconds or len(done) == num_models:
      save()
      last_save = now
      logging.info("%s: model %d/%d", label, len(done), num_models)
  return jax.tree.map(lambda *a: np.stack(a), *done), seconds


def _train_and_test(
    config: ml_collections.ConfigDict,
    ds: uci.UCIDataset,
    phase: str,
    split_ids: list[int],
    grid_index: np.ndarray,
    rates: np.ndarray,
    taus: np.ndarray,
    workdir: str,
) -> dict[str, Any]:
  """Trains a (splits x grid points) block of models in one program; tests each one.

  ``grid_index``, ``rates`` and ``taus`` are ``(S, G)``. The G grid points of a split share
  its data and its batch order (common random numbers: the grid comparison sees the same
  shuffles, and 20 permutations per epoch are drawn instead of 240 -- XLA's sort made them
  two thirds of a step); each model has its own initialisation, masks and MC samples.
  Results are flattened in (split, grid point) order.
  """
  root = prng.key(config.seed, config.prng_impl)
  splits = [uci.uci_split(ds, s, validation=(phase == "validation")) for s in split_ids]
  as_f32 = lambda name: jnp.asarray(np.stack([getattr(sp, name) for sp in splits]), jnp.float32)
  x_train, y_train, x_test = as_f32("x_train"), as_f32("y_train"), as_f32("x_test")
  y_mean = jnp.asarray([sp.y_mean for sp in splits], jnp.float32)
  y_std = jnp.asarray([sp.y_std for sp in splits], jnp.float32)
  y_test = as_f32("y_test") * y_std[:, None] + y_mean[:, None]  # original units
  rates, taus = jnp.asarray(rates, jnp.float32), jnp.asarray(taus, jnp.float32)
  n_train = x_train.shape[1]
  l2 = regression.l2_coefficient(rates, taus, n_train, config.length_scale)
  split_keys = [_split_keys(root, phase, s) for s in split_ids]
  shuffle_keys = jnp.stack([sk for sk, _ in split_keys])
  member_keys = jnp.stack([
      jnp.stack([jax.random.fold_in(mk, int(g)) for g in row])
      for (_, mk), row in zip(split_keys, grid_index, strict=True)])
  streams = jax.vmap(jax.vmap(lambda k: jax.random.split(k, 3)))(member_keys)  # init, drop, mc
  tx = regression.make_optimizer(config.learning_rate, config.adam_eps)
  state = jax.vmap(jax.vmap(
      lambda k: regression.init_state(k, ds.inputs.shape[1], ds.n_hidden, tx)))(streams[:, :, 0])

  mesh = study.model_mesh(config)

  def splits_block(per_split, first_epoch, num_epochs):
    per_grid_point = jax.vmap(
        lambda st, dr, p, c, sh, x, y: regression.train_epochs(
            st, (sh, dr), x, y, p, c, first_epoch, num_epochs=num_epochs,
            batch_size=config.batch_size, tx=tx),
        in_axes=(0, 0, 0, 0, None, None, None))
    return jax.vmap(per_grid_point)(*per_split)

  def segment(state, first_epoch, num_epochs):
    # Sharded by split: a split's grid points share its data and batch order.
    return study.shard_models(functools.partial(splits_block, num_epochs=num_epochs), mesh)(
        (state, streams[:, :, 1], rates, l2, shuffle_keys, x_train, y_train), first_epoch)

  state, train_seconds, _ = train_in_segments(
      jax.jit(segment, static_argnums=2), state,
      checkpoint=os.path.join(workdir, "checkpoints", phase),
      total_epochs=ds.n_epochs * config.epochs_multiplier,
      segment_epochs=config.segment_epochs, label=f"{ds.name} {phase}")

  # One model at a time over small sample chunks: its working set then stays in cache.
  # Vmapping all models with 100-sample chunks was half as fast (Kin8nm-sized, 2 CPUs).
  num_grid = rates.shape[1]
  flat_models = jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]),
                             (state.params, streams[:, :, 2], rates, taus))
  split_of_model = jnp.repeat(jnp.arange(len(split_ids)), num_grid)

  def test_model(inputs):
    params, key, rate, tau, s = inputs
    return regression.mc_regression_stats(
        params, key, x_test[s], y_test[s], rate, tau, y_mean[s], y_std[s],
        num_samples=config.mc_samples, chunk_size=config.mc_chunk_size,
        vectorize=config.mc_vectorize)

  stats, test_seconds = map_models_resumably(
      test_model, (*flat_models, split_of_model),
      checkpoint=os.path.join(workdir, "checkpoints", f"{phase}_test"),
      label=f"{ds.name} {phase} test", mesh=mesh)
  flat = lambda a: np.asarray(a).reshape(-1).tolist()
  return {
      "mc_rmse": flat(stats.mc_rmse),
      "log_likelihood": flat(stats.log_likelihood),
      "weight_scaling_rmse": flat(stats.weight_scaling_rmse),
      "coverage": np.asarray(stats.coverage).tolist(),  # (models, levels)
      "train_seconds": train_seconds,
      "test_seconds": test_seconds,
  }


def check_config(config: ml_collections.ConfigDict) -> None:
  """The UCI studies' rules beyond `config_checks.check_fields`, checked before any work.

  Args:
    config: a ``uci`` or ``uci_concrete`` config.

  Raises:
    config_checks.ConfigError: naming the field and the allowed values.
  """
  try:
    uci.canonical_name(config.dataset)
  except ValueError as e:
    raise config_checks.ConfigError(f"config.dataset: {e}") from None
  study.model_mesh(config)  # config.devices within this process's devices
  if config.mc_samples % config.mc_chunk_size:
    divisors = [d for d in range(1, min(config.mc_samples, 100) + 1) if config.mc_samples % d == 0]
    raise config_checks.ConfigError(
        f"config.mc_chunk_size = {config.mc_chunk_size} must divide config.mc_samples = "
        f"{config.mc_samples} (the test streams whole chunks of samples); e.g. {divisors}.")


def dataset_folder(config: ml_collections.ConfigDict) -> str:
  """The folder of one dataset's run in a UCI workdir: the dataset's canonical name."""
  return uci.canonical_name(config.dataset)


def dataset_report(summary: Mapping[str, Any], columns: Sequence[tuple[str, str, str]],
                   study_name: str) -> str:
  """One dataset's ``results.md``: ``columns`` are ``(key, header, format)`` of summary
  values, each a ``[mean, se]`` pair or a plain value."""
  cells = {key: reporting.format_mean_se(*summary[key], spec)
           if isinstance(summary[key], list | tuple) else format(summary[key], spec)
           for key, _, spec in columns}
  return (f"{summary['dataset']}: mean ± standard error over {summary['n_splits']} splits "
          f"({summary['epochs']} epochs, {summary['mc_samples']} MC samples). The table over "
          f"datasets: `python scripts/reproduce.py {study_name}`.\n\n"
          + reporting.markdown_table([cells], [(key, header, "s") for key, header, _ in columns]))


def train_and_evaluate(config: ml_collections.ConfigDict, sections: study.Sections
                       ) -> study.Report:
  """Runs the protocol on ``config.dataset``; the aggregated results and the split rows."""
  ds = sections.data
  summary = sections("results", lambda: _grid_search_and_test(config, ds, sections))
  columns = (("mc_rmse", "RMSE", ".4g"), ("log_likelihood", "LL", ".4f"),
             ("weight_scaling_rmse", "WS RMSE", ".4g"))
  return study.Report(summary=summary, markdown=dataset_report(summary, columns, "uci"),
                      rows=summary["rows"])


def load_dataset(config: ml_collections.ConfigDict) -> uci.UCIDataset:
  """``config.dataset``, every file checked against its recorded SHA-256 (`Study.load_data`:
  a missing or corrupt file is refused before the folder records the data)."""
  return uci.load_uci(config.dataset, config.data_dir or None)


STUDY = study.Study("uci", train_and_evaluate, subfolder=dataset_folder, load_data=load_dataset)


def _grid_search_and_test(config: ml_collections.ConfigDict, ds: uci.UCIDataset,
                          sections: study.Sections) -> dict[str, Any]:
  data_dir = config.data_dir or None
  workdir = sections.folder
  start = time.perf_counter()
  n_splits = ds.n_splits if config.num_splits <= 0 else min(config.num_splits, ds.n_splits)
  splits = list(range(n_splits))
  # p-major, tau-minor: the reference code's loop order, which decides ties.
  grid = [(p, t) for p in ds.dropout_rates for t in ds.tau_values]

  def grid_search():
    grid_index = np.tile(np.arange(len(grid)), (n_splits, 1))
    rates = np.tile([p for p, _ in grid], (n_splits, 1))
    taus = np.tile([t for _, t in grid], (n_splits, 1))
    validation = _train_and_test(config, ds, "validation", splits, grid_index, rates, taus,
                                 workdir)
    validation["members"] = [(s, g, p, t) for s in splits for g, (p, t) in enumerate(grid)]
    return validation

  validation = sections("validation", grid_search)
  val_ll = np.asarray(validation["log_likelihood"]).reshape(n_splits, len(grid))
  chosen = [int(np.argmax(row)) for row in val_ll]  # first maximum on ties

  final = _train_and_test(
      config, ds, "final", splits, np.asarray(chosen)[:, None],
      np.asarray([[grid[g][0]] for g in chosen]), np.asarray([[grid[g][1]] for g in chosen]),
      workdir)

  reference = uci_reference.load_reference_results(ds.name, data_dir)
  rows = []
  for i, s in enumerate(splits):
    row = {"split": s, "rate": grid[chosen[i]][0], "tau": grid[chosen[i]][1],
           "mc_rmse": final["mc_rmse"][i], "log_likelihood": final["log_likelihood"][i],
           "weight_scaling_rmse": final["weight_scaling_rmse"][i],
           **{f"coverage_{level:g}": final["coverage"][i][j]
              for j, level in enumerate(regression.COVERAGE_LEVELS)}}
    if reference is not None:
      row |= {"reference_rate": float(reference.rate[s]), "reference_tau": float(reference.tau[s]),
              "reference_mc_rmse": float(reference.mc_rmse[s]),
              "reference_log_likelihood": float(reference.log_likelihood[s])}
    rows.append(row)
  summary = {
      "dataset": ds.name, "n_splits": n_splits,
      "epochs": ds.n_epochs * config.epochs_multiplier, "mc_samples": config.mc_samples,
      "mc_rmse": reporting.mean_se(final["mc_rmse"]),
      "log_likelihood": reporting.mean_se(final["log_likelihood"]),
      "weight_scaling_rmse": reporting.mean_se(final["weight_scaling_rmse"]),
      # Fraction of test targets inside the central predictive interval, per level.
      "coverage": {f"{level:g}": reporting.mean_se([c[j] for c in final["coverage"]])
                   for j, level in enumerate(regression.COVERAGE_LEVELS)},
      "seconds": {"validation_train": validation["train_seconds"],
                  "validation_test": validation["test_seconds"],
                  "final_train": final["train_seconds"], "final_test": final["test_seconds"],
                  "this_invocation": time.perf_counter() - start},
      "rows": rows,
  }
  if reference is not None:
    summary["reference_2018"] = {"mc_rmse": reference.summary["MC errors"],
                                 "log_likelihood": reference.summary["lls"]}
  logging.info("%s: MC RMSE %.4f +- %.4f, LL %.4f +- %.4f, WS RMSE %.4f", ds.name,
               *summary["mc_rmse"], *summary["log_likelihood"], summary["weight_scaling_rmse"][0])
  return summary
