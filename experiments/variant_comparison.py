"""The variant comparison: one architecture and budget, every dropout variant at its tuned rate.

Each fixed-rate variant trains at ``config.tune_scales`` x its configured rates; the run
with the lowest validation ``config.tune_metric`` is reported on the test split.
Resumable: each run's result is written atomically to
``workdir/variants/NAME@SCALE.json`` when it finishes, and a restarted study loads
finished runs instead of retraining them (each run is a deterministic function of the
config, so the numbers are the same).
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
from flax import nnx

from dropjax import io, layers, metrics, variants
from dropjax.data import Split, SplitDataset
from dropjax.mc import mc_predict, module_forward
from dropjax.models import MLP, ConvNet, SequenceClassifier
from dropjax.train import ensemble_member, fit_classifier, fit_ensemble, predict_probabilities
from experiments import datasets, reporting

COLUMNS = (
    ("variant", "variant", "s"),
    ("scale", "tuned x", "g"),
    ("conv_rate", "conv rate", ".3f"),
    ("dense_rate", "dense rate", ".3f"),
    ("validation_score", "val score", ".4f"),
    ("accuracy_det", "acc (det)", ".4f"),
    ("accuracy_mc", "acc (MC)", ".4f"),
    ("nll_det", "NLL (det)", ".4f"),
    ("nll_mc", "NLL (MC)", ".4f"),
    ("ece_det", "ECE (det)", ".4f"),
    ("ece_mc", "ECE (MC)", ".4f"),
    ("brier_det", "Brier (det)", ".4f"),
    ("brier_mc", "Brier (MC)", ".4f"),
    ("step_ms", "ms/step", ".2f"),
    ("overhead", "time vs none", ".2f"),
)


def _evaluate_model(config, model, test: Split, mc_key: jax.Array) -> dict[str, float]:
  """Deterministic and MC-dropout test metrics of a trained model."""
  test_x = jnp.asarray(test.images)
  det = metrics.summary(predict_probabilities(model, test_x), test.labels, config.ece_bins)
  # The no-dropout baseline is its own MC mean: MC metrics equal deterministic ones there.
  forward = module_forward(model, require_stochastic=False)
  mc_probs = jax.jit(
      lambda k, x: mc_predict(forward, k, x, config.mc_samples, chunk_size=config.mc_chunk_size)
  )(mc_key, test_x)
  mc = metrics.summary(mc_probs, test.labels, config.ece_bins)
  return {**{f"{k}_det": v for k, v in det.items()}, **{f"{k}_mc": v for k, v in mc.items()}}


def scaled_rates(config: ml_collections.ConfigDict, variant: str,
                 scale: float) -> tuple[float, float]:
  """``(conv_rate, dense_rate)`` of ``variant``: the config's rates times ``scale``."""
  return scale * config.conv_rate[variant], scale * config.dense_rate[variant]


def is_tuned(variant: str) -> bool:
  """Fixed-rate variants are tuned; no dropout has no rate and concrete learns its own
  (the registry's ``op`` and ``learns_rate``)."""
  entry = variants.get(variant)
  return entry.op is not None and not entry.learns_rate


def run_variant(config: ml_collections.ConfigDict, variant: str, data,
                scale: float = 1.0) -> dict[str, Any]:
  """Trains one variant at its config rates times ``scale`` on the training split and
  scores it on the validation and test splits; a pure function of the config."""
  conv_rate, dense_rate = scaled_rates(config, variant, scale)
  root = jax.random.key(config.seed)
  init_key, train_key, mc_key = (jax.random.fold_in(root, i) for i in range(3))
  n_train = data.train.images.shape[0]
  # The same init key for every variant and rate: where shapes agree the initial weights
  # agree. The penalty coefficients only act on concrete dropout's layers.
  model = ConvNet(
      data.train.images.shape[-1], data.num_classes, spatial_size=data.train.images.shape[1],
      variant=variant, conv_rate=conv_rate, dense_rate=dense_rate,
      channels=tuple(config.channels), dense_features=config.dense_features,
      block_size=config.block_size, weight_regularizer=config.concrete_length_scale**2 / n_train,
      dropout_regularizer=1.0 / n_train, rngs=nnx.Rngs(params=init_key, dropout=0),
  )
  tic = time.perf_counter()
  history = fit_classifier(
      model, data.train, key=train_key, epochs=config.epochs, batch_size=config.batch_size,
      learning_rate=config.learning_rate, weight_decay=config.weight_decay,
      progress=lambda s: logging.log_every_n_seconds(
          logging.INFO, "%s x%g: epoch %d/%d loss %.4f, ETA %.0fs", 10, variant, scale,
          s["epoch"], s["epochs"], s["loss"], s["eta_seconds"]),
  )
  train_seconds = time.perf_counter() - tic
  scores = _evaluate_model(config, model, data.test, mc_key)
  validation = _evaluate_model(config, model, data.validation, jax.random.fold_in(mc_key, 1))
  # Steady-state step time: the first epoch includes compilation.
  steady = history["epoch_seconds"][1:] or history["epoch_seconds"]
  steps_per_epoch = history["steps"] / config.epochs
  result = {
      "variant": variant,
      "scale": scale,
      "conv_rate": conv_rate,
      "dense_rate": dense_rate,
      **scores,
      **{f"validation_{k}": v for k, v in validation.items()},
      "final_train_loss": history["loss"][-1],
      "train_seconds": train_seconds,
      "step_ms": 1e3 * float(np.median(steady)) / steps_per_epoch,
  }
  learned = [float(m.rate) for _, m in nnx.iter_modules(model)
             if isinstance(m, layers.ConcreteDropout)]
  if learned:
    result["learned_rates"] = learned
  return result


def tune_variant(config: ml_collections.ConfigDict, variant: str, data,
                 workdir: str) -> dict[str, Any]:
  """Trains ``variant`` at every rate scale of ``config.tune_scales`` and returns the run
  with the best validation ``config.tune_metric`` (the first on ties), its test metrics
  and every candidate's validation score.

  Each candidate is stored in ``workdir/variants/<variant>@<scale>.json`` as it finishes,
  so a restarted study retrains only the missing ones.
  """
  scales = tuple(config.tune_scales) if is_tuned(variant) else (1.0,)
  candidates = []
  for scale in scales:
    path = os.path.join(workdir, "variants", f"{variant}@{scale:g}.json")
    candidate = reporting.load_json(path)
    if candidate is None:
      candidate = run_variant(config, variant, data, scale)
      io.write_json_atomic(path, candidate)
      logging.info("%s x%g: validation %s %.4f, test acc %.4f / %.4f (det / MC), %.1fs",
                   variant, scale, config.tune_metric,
                   candidate[f"validation_{config.tune_metric}"], candidate["accuracy_det"],
                   candidate["accuracy_mc"], candidate["train_seconds"])
    candidates.append(candidate)
  scores = [c[f"validation_{config.tune_metric}"] for c in candidates]
  best = dict(candidates[int(np.argmin(scores))])  # argmin: the first on ties
  best["validation_score"] = best[f"validation_{config.tune_metric}"]
  best["candidates"] = [{"scale": c["scale"], "conv_rate": c["conv_rate"],
                         "dense_rate": c["dense_rate"], "validation_score": score,
                         "train_seconds": c["train_seconds"]}
                        for c, score in zip(candidates, scores, strict=True)]
  return best


def load_dataset(config: ml_collections.ConfigDict) -> SplitDataset:
  """The embedded digits (split by ``config.split_seed``) or MNIST from the data dir, the
  training split cut to its first ``config.train_size`` examples when that is set."""
  data = datasets.load_classification(config.dataset, config.data_dir,
                                      validation_size=config.validation_size,
                                      split_seed=config.split_seed)
  if config.train_size:
    data = data._replace(train=Split(data.train.images[:config.train_size],
                                     data.train.labels[:config.train_size]))
  return data


def _features(data: SplitDataset) -> int:
  return int(np.prod(data.train.images.shape[1:]))


def _subset(split: Split, fraction: float) -> Split:
  n = max(1, round(fraction * len(split.labels)))
  return Split(split.images[:n], split.labels[:n])


def rate_sweep(config, data) -> list[dict[str, Any]]:
  """Test error/NLL against the rate for small and large MLPs on little and more data."""
  rates = np.repeat(np.asarray(config.sweep_rates, np.float32), config.sweep_seeds)
  rows = []
  for size_name, hidden in (("small", config.sweep_small_hidden),
                            ("large", config.sweep_large_hidden)):
    for fraction in config.sweep_train_fractions:
      train = _subset(data.train, fraction)
      make = lambda rngs, rate, hidden=hidden: MLP(
          _features(data), list(hidden), data.num_classes, input_rate=rate * 0.4,
          hidden_rate=rate,
          rngs=rngs)
      keys = jax.random.split(jax.random.fold_in(jax.random.key(config.seed), 7), len(rates))
      batch = min(config.batch_size, len(train.labels))
      # Equal budget in steps: fewer examples, more epochs.
      epochs = max(1, round(config.epochs / fraction))
      graphdef, states, _ = fit_ensemble(make, train, keys=keys, hparams={"rate": rates},
                                         epochs=epochs, batch_size=batch,
                                         learning_rate=config.learning_rate)
      for i, rate in enumerate(rates):
        probs = predict_probabilities(ensemble_member(graphdef, states, i), data.test.images)
        rows.append({"model": f"{size_name} {tuple(hidden)}", "train_examples": len(train.labels),
                     "rate": float(rate), "seed": i % config.sweep_seeds,
                     **metrics.summary(probs, data.test.labels, config.ece_bins)})
  return rows


def _mean_over_seeds(rows, keys):
  groups: dict[tuple, list] = {}
  for r in rows:
    groups.setdefault(tuple(r[k] for k in keys), []).append(r)
  return [dict(zip(keys, group, strict=True)) | {
      m: float(np.mean([r[m] for r in members])) for m in ("accuracy", "nll", "ece")}
      for group, members in groups.items()]


def batchnorm_placements(config, data) -> list[dict[str, Any]]:
  rows = []
  key = jax.random.key(config.seed)
  for placement in (None, "after_dropout", "before_dropout"):
    model = MLP(_features(data), list(config.batchnorm_hidden), data.num_classes, input_rate=0.2,
                hidden_rate=0.5, batch_norm=placement,
                rngs=nnx.Rngs(params=jax.random.fold_in(key, 0), dropout=0))
    fit_classifier(model, data.train, key=jax.random.fold_in(key, 1), epochs=config.epochs,
                   batch_size=config.batch_size, learning_rate=config.learning_rate)
    rows.append({"batch_norm": placement or "none",
                 **_evaluate_model(config, model, data.test, jax.random.fold_in(key, 2))})
  return rows


def lstm_modes(config, data) -> list[dict[str, Any]]:
  rows = []
  key = jax.random.key(config.seed)
  rate = config.lstm_rate
  for mode, rates in (("no dropout", (0.0, 0.0, 0.0)), ("naive (fresh mask per step)",
                                                         (rate, rate, rate)),
                      ("variational (mask shared over time)", (rate, rate, rate))):
    model = SequenceClassifier(
        data.train.images.shape[2], config.lstm_hidden, data.num_classes,
        mode="naive" if "naive" in mode else
        "variational", input_rate=rates[0], state_rate=rates[1], output_rate=rates[2],
        rngs=nnx.Rngs(params=jax.random.fold_in(key, 0), dropout=0))
    fit_classifier(model, data.train, key=jax.random.fold_in(key, 1), epochs=config.epochs,
                   batch_size=config.batch_size, learning_rate=config.learning_rate)
    rows.append({"lstm": mode, "rate": rates[0],
                 **_evaluate_model(config, model, data.test, jax.random.fold_in(key, 2))})
  return rows


def _plot(rows, path):
  plt = reporting.pyplot()
  names = [r["variant"] for r in rows]
  x = np.arange(len(names))
  fig, axes = plt.subplots(1, 3, figsize=(15, 4))
  for ax, metric, title in zip(axes, ("accuracy", "nll", "ece"),
                               ("test accuracy", "test NLL", "test ECE (15 bins)"), strict=True):
    ax.bar(x - 0.2, [r[f"{metric}_det"] for r in rows], 0.4, label="deterministic")
    ax.bar(x + 0.2, [r[f"{metric}_mc"] for r in rows], 0.4, label="MC dropout")
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set_title(title)
    if metric == "accuracy":
      low = min(min(r["accuracy_det"], r["accuracy_mc"]) for r in rows)
      ax.set_ylim(max(0.0, low - 0.05), 1.0)
  axes[0].legend()
  reporting.save_figure(fig, path)


TUNE_METRICS = ("nll_mc", "nll_det", "brier_mc", "brier_det", "ece_mc", "ece_det")


def check_config(config: ml_collections.ConfigDict) -> None:
  """Refuses a tuning setup that cannot run, before anything is trained or recorded."""
  if config.tune_metric not in TUNE_METRICS:
    raise ValueError(f"config.tune_metric must be one of {TUNE_METRICS} (lower is better); "
                     f"got {config.tune_metric!r}.")
  if not config.tune_scales or any(s <= 0 for s in config.tune_scales):
    raise ValueError("config.tune_scales must be a non-empty tuple of positive rate "
                     f"multipliers; got {tuple(config.tune_scales)}.")
  for variant in filter(is_tuned, config.variants):
    for scale in config.tune_scales:
      rates = scaled_rates(config, variant, scale)
      if not all(0.0 <= r < 1.0 for r in rates):
        raise ValueError(
            f"config.tune_scales: {scale:g} x the rates of {variant!r} gives (conv, dense) = "
            f"{rates}; every tuned rate must lie in [0, 1).")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs every variant of ``config.variants`` (resuming finished ones) and writes the report."""
  check_config(config)
  data = load_dataset(config)
  reporting.start_workdir(config, workdir)
  start = time.perf_counter()
  rows = [tune_variant(config, variant, data, workdir) for variant in config.variants]
  baseline = next((r["step_ms"] for r in rows if r["variant"] == "none"), None)
  for row in rows:
    row["overhead"] = row["step_ms"] / baseline if baseline else None
  section = lambda name, compute: reporting.load_or_compute(
      os.path.join(workdir, f"{name}.json"), compute)
  sweep = section("rate_sweep", lambda: rate_sweep(config, data))
  sweep_mean = _mean_over_seeds(sweep, ("model", "train_examples", "rate"))
  bn = section("batchnorm", lambda: batchnorm_placements(config, data))
  lstm = section("lstm", lambda: lstm_modes(config, data))
  wall = time.perf_counter() - start
  total_train = sum(c["train_seconds"] for r in rows for c in r["candidates"])
  scales = ", ".join(f"{s:g}" for s in config.tune_scales)
  header = (
      f"Variant comparison on {config.dataset} ({data.train.images.shape[0]} train / "
      f"{data.validation.images.shape[0]} validation / {data.test.images.shape[0]} test), "
      f"{config.epochs} epochs, seed {config.seed}, MC with {config.mc_samples} samples. "
      f"Each fixed-rate variant is trained at {scales} x its configured rates and the run "
      f"with the lowest validation {config.tune_metric} is kept (`tuned x`, `val score`); "
      "its test metrics are shown. Concrete dropout learns its rates (initial rates shown). "
      f"Training all candidates took {total_train:.0f}s "
      f"(this invocation, all sections: {wall:.0f}s).\n\n"
  )
  table = reporting.markdown_table(rows, COLUMNS)
  metric_columns = (("accuracy_det", "acc (det)", ".4f"), ("accuracy_mc", "acc (MC)", ".4f"),
                    ("nll_det", "NLL (det)", ".4f"), ("nll_mc", "NLL (MC)", ".4f"),
                    ("ece_det", "ECE (det)", ".4f"), ("ece_mc", "ECE (MC)", ".4f"))
  extra = (
      "\n**When does dropout hurt?** MLPs on a tenth of the training set and on all of it, "
      "about the same number of steps, test metrics (mean over seeds); input rate = 0.4 x hidden "
      "rate.\n\n" + reporting.markdown_table(sweep_mean, (
          ("model", "model", "s"), ("train_examples", "train examples", "d"),
          ("rate", "hidden rate", ".1f"), ("accuracy", "accuracy", ".4f"),
          ("nll", "NLL", ".4f"), ("ece", "ECE", ".4f")))
      + "\n**Dropout and BatchNorm** (MLP, rates 0.2/0.5; `after_dropout`: dropout feeds "
      "BatchNorm; `before_dropout`: dropout only after the last BatchNorm).\n\n"
      + reporting.markdown_table(bn, (("batch_norm", "BatchNorm", "s"), *metric_columns))
      + "\n**LSTM on the digits read row by row** (8 steps), variational vs naive dropout.\n\n"
      + reporting.markdown_table(lstm, (("lstm", "dropout", "s"), ("rate", "rate", ".2f"),
                                        *metric_columns))
  )
  io.write_text_atomic(os.path.join(workdir, "results.md"), header + table + extra)
  io.write_csv_atomic(os.path.join(workdir, "results.csv"),
                      [{k: r.get(k) for k, _, _ in COLUMNS} | {"train_seconds": r["train_seconds"]}
                       for r in rows])
  _plot(rows, os.path.join(workdir, "variant_comparison.png"))
  summary = {r["variant"]: {"accuracy_mc": r["accuracy_mc"], "ece_mc": r["ece_mc"]} for r in rows}
  out = {"rows": rows, "summary": summary, "rate_sweep": sweep, "batchnorm": bn, "lstm": lstm,
         "wall_seconds": wall}
  io.write_json_atomic(os.path.join(workdir, "metrics.json"), out)
  print(header + table + extra)
  return out
