"""Dropout against other regularisers, and rate schedules against a fixed rate.

One MLP and one CNN, the same budget (epochs, batch, optimizer) for every method, several
seeds. Methods are rows of `METHODS`: which of dropout, L2, max-norm, early stopping,
BatchNorm and a rate schedule they use. First the dense dropout rate is tuned on the
validation split (seed 0); every dropout method then uses the tuned rate (schedules peak
at it), so "a tuned fixed rate vs schedules" compares like with like.

Keys: seed s initialises every method's model from the same key (common random numbers),
and trains with the same batch order and mask stream.

Resumable: each (model, method, seed) result is written atomically to
``workdir/runs/MODEL-METHOD-SEED.json`` and loaded on restart.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import nnx

from dropjax import metrics, prng, schedules
from dropjax.data import Split
from dropjax.models import MLP, ConvNet
from dropjax.ops import per_depth_rates
from dropjax.train import fit_classifier, largest_unit_norm, predict_probabilities
from experiments import config_checks, datasets, reporting, study

# What each method uses. A method without an entry for a model is not run on it.
METHODS: dict[str, dict[str, Any]] = {
    "none": {},
    "l2": {"l2": True},
    "early_stopping": {"early_stopping": True},
    "max_norm": {"max_norm": True},
    "dropout": {"dropout": "by_layer_type"},
    "dropout_uniform": {"dropout": "uniform"},
    "dropout_per_depth": {"dropout": "per_depth", "models": ("mlp",)},
    "dropout_l2": {"dropout": "by_layer_type", "l2": True},
    "dropout_max_norm": {"dropout": "by_layer_type", "max_norm": True},
    "batch_norm": {"batch_norm": True},
    "batch_norm_dropout": {"dropout": "by_layer_type", "batch_norm": True},
    "dropout_decay": {"dropout": "by_layer_type", "schedule": "decay"},
    "dropout_curriculum": {"dropout": "by_layer_type", "schedule": "curriculum"},
}

COLUMNS = (
    ("model", "model", "s"), ("method", "method", "s"),
    ("error", "test error %", "s"), ("nll", "NLL", "s"), ("ece", "ECE", "s"),
    ("seconds", "train s", ".1f"),
)


def _rates(config, model: str, kind: str | None, dense_rate: float) -> tuple[Any, Any]:
  """(first-position rate, later-position rates) of a model for a dropout kind."""
  if kind is None:
    return 0.0, 0.0
  first = config.input_rate if model == "mlp" else config.conv_rate
  if kind == "uniform":
    return config.uniform_rate, config.uniform_rate
  if kind == "per_depth":
    rates = per_depth_rates(len(config.mlp_hidden) + 1, config.per_depth_first, dense_rate)
    return rates[0], rates[1:]
  return first, dense_rate


def build_model(config, model: str, method: str, dense_rate: float, data_shape, seed_key):
  spec = METHODS[method]
  first, later = _rates(config, model, spec.get("dropout"), dense_rate)
  # A schedule changes the rates inside the compiled step: they must be arrays (state).
  as_rate = (lambda r: jnp.asarray(r, jnp.float32)) if spec.get("schedule") else float
  later = tuple(as_rate(r) for r in later) if isinstance(later, tuple) else as_rate(later)
  batch_norm = "after_dropout" if spec.get("batch_norm") else None
  rngs = nnx.Rngs(params=seed_key, dropout=0)
  if model == "mlp":
    return MLP(int(np.prod(data_shape)), list(config.mlp_hidden), 10, input_rate=as_rate(first),
               hidden_rate=later, batch_norm=batch_norm, rngs=rngs)
  return ConvNet(data_shape[-1], 10, spatial_size=data_shape[0],
                 variant="dropout" if spec.get("dropout") else "none", conv_rate=as_rate(first),
                 dense_rate=later, channels=tuple(config.cnn_channels),
                 dense_features=config.cnn_dense_features, batch_norm=batch_norm, rngs=rngs)


def run_one(config, data: tuple[Split, Split, Split], model: str, method: str, seed: int,
            dense_rate: float) -> dict[str, Any]:
  """Trains one (model, method, seed) and returns its test metrics."""
  train, validation, test = data
  spec = METHODS[method]
  root = jax.random.fold_in(prng.key(config.seed, config.prng_impl), seed)
  net = build_model(config, model, method, dense_rate, train.images.shape[1:],
                    jax.random.fold_in(root, 0))
  epochs = config.epochs[model]
  total_steps = epochs * (len(train.labels) // config.batch_size)
  scale = {
      None: None,
      "decay": schedules.linear_decay_schedule(1.0, 0.0, total_steps),
      "curriculum": schedules.curriculum_schedule(
          1.0, total_steps, off_fraction=config.curriculum_off_fraction),
  }[spec.get("schedule")]
  tic = time.perf_counter()
  history = fit_classifier(
      net, train, key=jax.random.fold_in(root, 1), epochs=epochs,
      batch_size=config.batch_size, learning_rate=config.learning_rate,
      l2=config.l2 if spec.get("l2") else 0.0,
      max_norm=config.max_norm if spec.get("max_norm") else None,
      validation=validation if spec.get("early_stopping") else None,
      patience=config.patience if spec.get("early_stopping") else None,
      rate_scale=scale, epoch_hooks=study.curve_hooks())
  seconds = time.perf_counter() - tic
  val = metrics.summary(predict_probabilities(net, validation.images), validation.labels,
                        config.ece_bins)
  result = metrics.summary(predict_probabilities(net, test.images), test.labels,
                           config.ece_bins)
  return {"model": model, "method": method, "seed": seed, "dense_rate": dense_rate,
          "error": 1.0 - result["accuracy"], **{k: v for k, v in result.items() if k != "accuracy"},
          "validation_error": 1.0 - val["accuracy"], "seconds": seconds,
          "epochs_trained": len(history["loss"]), "largest_unit_norm": largest_unit_norm(net)}


def _mean_std(values, digits: int = 4) -> str:
  values = np.asarray(values, np.float64)
  return f"{values.mean():.{digits}f} ± {values.std():.{digits}f}"


def _claims(config, rows) -> list[str]:
  """The seeds' claims, each with the numbers that decide it (difference vs its s.e.)."""
  def errors(model, method):
    return np.asarray([r["error"] for r in rows if r["model"] == model and r["method"] == method])

  def compare(model, a, b):
    ea, eb = errors(model, a), errors(model, b)
    if not len(ea) or not len(eb):
      return None
    diff = 100 * (ea.mean() - eb.mean())
    se = 100 * np.sqrt(ea.var(ddof=1) / len(ea) + eb.var(ddof=1) / len(eb)) if min(
        len(ea), len(eb)) > 1 else float("nan")
    verdict = ("lower" if diff < -2 * se else "higher" if diff > 2 * se
               else "not distinguishable (within 2 s.e.)")
    return (f"{model}: `{a}` {100 * ea.mean():.2f}% vs `{b}` {100 * eb.mean():.2f}% "
            f"(difference {diff:+.2f} ± {se:.2f} points): {verdict}")

  lines = []
  for model in config.models:
    for schedule in ("dropout_decay", "dropout_curriculum"):
      line = compare(model, "dropout", schedule)
      if line:
        lines.append(f"- Tuned fixed rate vs schedule — {line}.")
    for a, b in (("dropout", "none"), ("dropout_max_norm", "dropout"), ("dropout_l2", "dropout"),
                 ("dropout", "dropout_uniform"), ("batch_norm_dropout", "batch_norm")):
      line = compare(model, a, b)
      if line:
        lines.append(f"- {line}.")
    # Whether max-norm could bind: how large the unconstrained units grew. (Results cached
    # before this field existed lack it.)
    norms = [r["largest_unit_norm"] for r in rows if r["model"] == model
             and r["method"] in ("none", "dropout") and "largest_unit_norm" in r]
    if norms and any(m in config.methods for m in ("max_norm", "dropout_max_norm")):
      bound = "binds" if max(norms) > config.max_norm else "never binds at the end of training"
      lines.append(f"- {model}: without max-norm the largest unit norm ends at {max(norms):.2f} "
                   f"(`none`, `dropout`, all seeds); the constraint c = {config.max_norm:g} "
                   f"{bound}.")
  return lines


def check_config(config: ml_collections.ConfigDict) -> None:
  """The study's rules beyond `config_checks.check_fields`, checked before any work.

  Args:
    config: a ``regularizers`` config.

  Raises:
    config_checks.ConfigError: naming the field and the allowed values.
  """
  config_checks.check_dataset(config)
  config_checks.check_choice(config, "methods", sorted(METHODS))
  config_checks.check_choice(config, "models", ["cnn", "mlp"])
  missing = [m for m in config.models if m not in config.epochs]
  if missing:
    raise config_checks.ConfigError(
        f"config.epochs has no epoch count for the models {missing}; give "
        f"config.epochs.<model> for each of config.models = {config.models}.")


def train_and_evaluate(config: ml_collections.ConfigDict, sections: study.Sections
                       ) -> study.Report:
  """Tunes the dense rate, runs every (model, method, seed); the table and the plot."""
  data = datasets.load_splits(config)
  start = time.perf_counter()

  # Model by model (tune, then every method and seed), so a long run finishes one model's
  # rows before it starts the next.
  tuned, rows = {}, []
  for model in config.models:
    candidates = [sections(f"runs/tune-{model}-{rate:g}",
                           lambda model=model, rate=rate: run_one(config, data, model, "dropout",
                                                                  0, rate))
                  for rate in config.tuning_rates]
    best = min(candidates, key=lambda r: (r["validation_error"], r["dense_rate"]))
    tuned[model] = best["dense_rate"]
    logging.info("%s: tuned dense rate %.2f (validation errors %s)", model, tuned[model],
                 [round(c["validation_error"], 4) for c in candidates])
    for method in config.methods:
      if model not in METHODS[method].get("models", ("mlp", "cnn")):
        continue
      for seed in range(config.num_seeds):
        rows.append(sections(
            f"runs/{model}-{method}-{seed}",
            lambda model=model, method=method, seed=seed: run_one(
                config, data, model, method, seed, tuned[model])))
        logging.info("%s %s seed %d: error %.4f", model, method, seed, rows[-1]["error"])

  table_rows = []
  for model in config.models:
    for method in config.methods:
      sel = [r for r in rows if r["model"] == model and r["method"] == method]
      if sel:
        table_rows.append({
            "model": model, "method": method,
            "error": _mean_std([100 * r["error"] for r in sel], 2),
            "nll": _mean_std([r["nll"] for r in sel]), "ece": _mean_std([r["ece"] for r in sel]),
            "seconds": float(np.mean([r["seconds"] for r in sel]))})
  wall = time.perf_counter() - start
  claims = _claims(config, rows)
  header = (f"Regularisers on {config.dataset}: MLP {tuple(config.mlp_hidden)} "
            f"({config.epochs['mlp']} epochs), CNN {tuple(config.cnn_channels)} "
            f"({config.epochs['cnn']} epochs); mean ± std over {config.num_seeds} seeds; tuned "
            f"dense rate {tuned}. Wall time of this invocation {wall:.0f}s.\n\n")
  text = (header + reporting.markdown_table(table_rows, COLUMNS) + "\n**The claims, tested**\n\n"
          + "\n".join(claims) + "\n")
  out = {"rows": rows, "table": table_rows, "tuned_dense_rate": tuned, "claims": claims,
         "summary": {f"{r['model']}/{r['method']}": r["error"] for r in table_rows},
         "wall_seconds": wall}
  return study.Report(summary=out, markdown=text, rows=rows,
                      figures={"regularizers.png": _plot(config, rows)})


STUDY = study.Study("regularizers", train_and_evaluate)


def _plot(config, rows):
  plt = reporting.pyplot()
  fig, axes = plt.subplots(1, len(config.models), figsize=(7 * len(config.models), 4),
                           squeeze=False)
  for ax, model in zip(axes[0], config.models, strict=True):
    methods = [m for m in config.methods if any(
        r["model"] == model and r["method"] == m for r in rows)]
    for i, method in enumerate(methods):
      values = [100 * r["error"] for r in rows if r["model"] == model and r["method"] == method]
      ax.scatter(np.full(len(values), i), values, s=12, color="C0")
      ax.errorbar(i, np.mean(values), yerr=np.std(values), fmt="_", color="C3", ms=14)
    ax.set_xticks(range(len(methods)), methods, rotation=45, ha="right")
    ax.set_ylabel("test error (%)")
    ax.set_title(f"{model}: seeds (dots), mean ± std (red)")
  return fig
