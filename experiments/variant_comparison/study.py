"""The variant comparison: one architecture and budget, every dropout variant at its tuned rate.

Each fixed-rate variant trains at ``config.tune_scales`` x its configured rates on seed 0,
and the lowest validation ``config.tune_metric`` picks its scale. Every variant then trains
with ``config.num_seeds`` seeds at that scale (seed 0 is the tuning run). The report gives
mean ± standard error over seeds of every metric and the differences from no dropout and
from standard dropout, paired by seed: seed i of every variant starts from the same weights
and sees the same batches, so its difference cancels that noise. A difference is marked as
decided when it exceeds 2 standard errors.

Resumable: each run's result is written atomically to
``workdir/variants/NAME@SCALE-seedI.json`` when it finishes, and a restarted study loads
finished runs instead of retraining them (each run is a deterministic function of the
config, so the numbers are the same).
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

from dropjax import layers, metrics, prng, variants
from dropjax.data import Split, SplitDataset
from dropjax.mc import mc_predict, module_forward
from dropjax.models import MLP, ConvNet, SequenceClassifier
from dropjax.train import ensemble_member, fit_classifier, fit_ensemble, predict_probabilities
from experiments import config_checks, datasets, reporting, study

# The metrics reported with mean ± s.e.; lower is better except accuracy.
METRICS = ("accuracy_det", "accuracy_mc", "nll_det", "nll_mc", "ece_det", "ece_mc",
           "brier_det", "brier_mc")
HEADERS = {"accuracy": "acc", "nll": "NLL", "ece": "ECE", "brier": "Brier"}
# The paired comparisons: every variant against each of these.
BASELINES = ("none", "dropout")
PAIRED_METRICS = ("accuracy_mc", "nll_mc", "ece_mc", "brier_mc", "accuracy_det", "nll_det")


def _header(metric: str) -> str:
  name, mode = metric.rsplit("_", 1)
  return f"{HEADERS[name]} ({'MC' if mode == 'mc' else 'det'})"


def _evaluate_splits(config, model, splits: dict[str, Split],
                     mc_key: jax.Array) -> dict[str, dict[str, float]]:
  """Deterministic and MC-dropout metrics of a trained model on each split.

  The splits are scored as one batch (one compilation of each predictor; MC sample i uses
  ``fold_in(mc_key, i)`` for every image), then the metrics are taken split by split.
  """
  images = jnp.concatenate([jnp.asarray(s.images) for s in splits.values()])
  det_probs = predict_probabilities(model, images)
  # The no-dropout baseline is its own MC mean: MC metrics equal deterministic ones there.
  forward = module_forward(model, require_stochastic=False)
  mc_probs = jax.jit(
      lambda f, k, x: mc_predict(f, k, x, config.mc_samples, chunk_size=config.mc_chunk_size)
  )(forward, mc_key, images)
  out, start = {}, 0
  for name, split in splits.items():
    end = start + len(split.labels)
    det = metrics.summary(det_probs[start:end], split.labels, config.ece_bins)
    mc = metrics.summary(mc_probs[start:end], split.labels, config.ece_bins)
    out[name] = {**{f"{k}_det": v for k, v in det.items()},
                 **{f"{k}_mc": v for k, v in mc.items()}}
    start = end
  return out


def _evaluate_model(config, model, test: Split, mc_key: jax.Array) -> dict[str, float]:
  """Deterministic and MC-dropout test metrics of a trained model."""
  return _evaluate_splits(config, model, {"test": test}, mc_key)["test"]


def scaled_rates(config: ml_collections.ConfigDict, variant: str,
                 scale: float) -> tuple[float, float]:
  """``(conv_rate, dense_rate)`` of ``variant``: the config's rates times ``scale``."""
  return scale * config.conv_rate[variant], scale * config.dense_rate[variant]


def is_tuned(variant: str) -> bool:
  """Fixed-rate variants are tuned; no dropout has no rate and concrete learns its own
  (the registry's ``op`` and ``learns_rate``)."""
  entry = variants.get(variant)
  return entry.op is not None and not entry.learns_rate


def run_key(config: ml_collections.ConfigDict, seed: int) -> jax.Array:
  """Seed ``seed``'s root key: ``fold_in(key(config.seed), seed)``; its ``init``, ``train``
  and ``mc`` streams do not depend on the variant, so seed i pairs across variants."""
  return jax.random.fold_in(prng.key(config.seed, config.prng_impl), seed)


def run_variant(config: ml_collections.ConfigDict, variant: str, data,
                scale: float = 1.0, seed: int = 0) -> dict[str, Any]:
  """Trains one variant at its config rates times ``scale`` with seed ``seed`` and scores
  it on the validation and test splits; a pure function of the config and the seed."""
  start = time.perf_counter()
  conv_rate, dense_rate = scaled_rates(config, variant, scale)
  init_key, train_key, mc_key = (jax.random.fold_in(run_key(config, seed), i) for i in range(3))
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
          logging.INFO, "%s x%g seed %d: epoch %d/%d loss %.4f, ETA %.0fs", 10, variant, scale,
          seed, s["epoch"], s["epochs"], s["loss"], s["eta_seconds"]),
      epoch_hooks=study.curve_hooks(),
  )
  train_seconds = time.perf_counter() - tic
  # Only seed 0 tunes, so only seed 0 is scored on the validation split.
  splits = {"test": data.test, **({"validation": data.validation} if seed == 0 else {})}
  scored = _evaluate_splits(config, model, splits, mc_key)
  scores, validation = scored["test"], scored.get("validation", {})
  # Steady-state step time: the first epoch includes compilation.
  steady = history["epoch_seconds"][1:] or history["epoch_seconds"]
  steps_per_epoch = history["steps"] / config.epochs
  result = {
      "variant": variant,
      "scale": scale,
      "seed": seed,
      "conv_rate": conv_rate,
      "dense_rate": dense_rate,
      **scores,
      **{f"validation_{k}": v for k, v in validation.items()},
      "final_train_loss": history["loss"][-1],
      "train_seconds": train_seconds,
      "step_ms": 1e3 * float(np.median(steady)) / steps_per_epoch,
      "seconds": time.perf_counter() - start,
  }
  learned = [float(m.rate) for _, m in nnx.iter_modules(model)
             if isinstance(m, layers.ConcreteDropout)]
  if learned:
    result["learned_rates"] = learned
  return result


def _cached_run(config, variant: str, data, sections: study.Sections, scale: float,
                seed: int) -> dict[str, Any]:
  return sections(f"variants/{variant}@{scale:g}-seed{seed}",
                  lambda: _logged_run(config, variant, data, scale, seed))


def _logged_run(config, variant: str, data, scale: float, seed: int) -> dict[str, Any]:
  result = run_variant(config, variant, data, scale, seed)
  logging.info("%s x%g seed %d: validation %s %s, test acc %.4f / %.4f (det / MC), %.1fs",
               variant, scale, seed, config.tune_metric,
               result.get(f"validation_{config.tune_metric}", "-"), result["accuracy_det"],
               result["accuracy_mc"], result["train_seconds"])
  return result


def tune_variant(config: ml_collections.ConfigDict, variant: str, data,
                 sections: study.Sections) -> dict[str, Any]:
  """Trains ``variant`` with seed 0 at every rate scale of ``config.tune_scales`` and
  returns the run with the best validation ``config.tune_metric`` (the first on ties),
  with every candidate's validation score. Tuning uses one seed, the test split none."""
  scales = tuple(config.tune_scales) if is_tuned(variant) else (1.0,)
  candidates = [_cached_run(config, variant, data, sections, scale, 0) for scale in scales]
  scores = [c[f"validation_{config.tune_metric}"] for c in candidates]
  best = dict(candidates[int(np.argmin(scores))])  # argmin: the first on ties
  best["validation_score"] = best[f"validation_{config.tune_metric}"]
  best["candidates"] = [{"scale": c["scale"], "conv_rate": c["conv_rate"],
                         "dense_rate": c["dense_rate"], "validation_score": score,
                         "train_seconds": c["train_seconds"], "seconds": c["seconds"]}
                        for c, score in zip(candidates, scores, strict=True)]
  return best


def evaluate_variant(config: ml_collections.ConfigDict, variant: str, data,
                     sections: study.Sections) -> dict[str, Any]:
  """Tunes ``variant`` on seed 0, trains seeds ``1 .. num_seeds - 1`` at the chosen scale,
  and returns the row: per metric the mean, its standard error and every seed's value."""
  tuned = tune_variant(config, variant, data, sections)
  runs = [tuned] + [_cached_run(config, variant, data, sections, tuned["scale"], seed)
                    for seed in range(1, config.num_seeds)]
  row = {k: tuned[k] for k in ("variant", "scale", "conv_rate", "dense_rate",
                               "validation_score", "candidates")}
  for metric in (*METRICS, "step_ms"):
    values = [r[metric] for r in runs]
    row[metric], row[f"{metric}_se"] = reporting.seed_statistics(values)
    row[f"{metric}_seeds"] = values
  row["train_seconds"] = sum(r["train_seconds"] for r in runs) + sum(
      c["train_seconds"] for c in tuned["candidates"] if c["scale"] != tuned["scale"])
  row["seconds"] = sum(r["seconds"] for r in runs) + sum(
      c["seconds"] for c in tuned["candidates"] if c["scale"] != tuned["scale"])
  if "learned_rates" in tuned:
    row["learned_rates"] = [r["learned_rates"] for r in runs]
  return row


def paired_comparisons(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """Every variant against each baseline of `BASELINES` present: the per-seed difference
  of each metric of `PAIRED_METRICS`, its mean, standard error and whether it exceeds 2 s.e."""
  by_name = {r["variant"]: r for r in rows}
  out = []
  for baseline in BASELINES:
    if baseline not in by_name:
      continue
    for row in rows:
      # Each pair once: none vs dropout is listed against none only.
      if row["variant"] == baseline or row["variant"] in BASELINES[:BASELINES.index(baseline)]:
        continue
      diff = {"variant": row["variant"], "baseline": baseline}
      for metric in PAIRED_METRICS:
        mean, se = reporting.paired_difference(row[f"{metric}_seeds"],
                                               by_name[baseline][f"{metric}_seeds"])
        diff[metric], diff[f"{metric}_se"] = mean, se
        diff[f"{metric}_decided"] = reporting.exceeds_two_se(mean, se)
      out.append(diff)
  return out


def _better(metric: str, difference: float) -> bool:
  return difference > 0 if metric.startswith("accuracy") else difference < 0


def findings(paired: list[dict[str, Any]]) -> list[str]:
  """One line per variant and baseline with the differences beyond 2 s.e., and the
  variants for which none is."""
  lines = []
  for baseline in BASELINES:
    rows = [p for p in paired if p["baseline"] == baseline]
    undecided = []
    for p in rows:
      decided = [m for m in PAIRED_METRICS if p[f"{m}_decided"]]
      if not decided:
        undecided.append(p["variant"])
        continue
      parts = []
      for verdict in ("better", "worse"):
        these = [m for m in decided if (verdict == "better") == _better(m, p[m])]
        if these:
          parts.append(f"{verdict} on " + ", ".join(
              f"{_header(m)} ({p[m]:+.4f} ± {p[f'{m}_se']:.4f}, "
              f"{abs(p[m]) / p[f'{m}_se']:.1f} s.e.)" for m in these))
      lines.append(f"- `{p['variant']}` vs `{baseline}`: " + "; ".join(parts) + ".")
    if undecided:
      lines.append(f"- Against `{baseline}`, no difference exceeds 2 s.e. for "
                   + ", ".join(f"`{v}`" for v in undecided) + ".")
  return lines


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
      # Member i is seed i % sweep_seeds: the same key for every rate of a seed (paired).
      seed_keys = jax.random.split(jax.random.fold_in(prng.key(config.seed, config.prng_impl), 7),
                                   config.sweep_seeds)
      keys = jnp.tile(seed_keys, len(config.sweep_rates))
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


def summarise_seeds(rows: list[dict[str, Any]], keys: tuple[str, ...],
                    measures: tuple[str, ...], baseline: dict[str, Any] | None = None
                    ) -> list[dict[str, Any]]:
  """Groups per-seed rows by ``keys``: mean ± s.e. of each measure and, when ``baseline``
  names the reference value of one key (``{"rate": 0.0}``), the difference from the
  reference group of the same other keys, paired by seed, and whether it exceeds 2 s.e."""
  groups: dict[tuple, list] = {}
  for r in rows:
    groups.setdefault(tuple(r[k] for k in keys), []).append(r)
  out = []
  for group, members in groups.items():
    members = sorted(members, key=lambda r: r["seed"])
    summary = dict(zip(keys, group, strict=True))
    for m in measures:
      summary[m], summary[f"{m}_se"] = reporting.seed_statistics([r[m] for r in members])
    if baseline is not None:
      ((field, value),) = baseline.items()
      reference = tuple(value if k == field else g for k, g in zip(keys, group, strict=True))
      if reference != group:
        base = sorted(groups[reference], key=lambda r: r["seed"])
        for m in measures:
          mean, se = reporting.paired_difference([r[m] for r in members], [r[m] for r in base])
          summary[f"d_{m}"], summary[f"d_{m}_se"] = mean, se
          summary[f"d_{m}_decided"] = reporting.exceeds_two_se(mean, se)
    out.append(summary)
  return out


def batchnorm_placements(config, data) -> list[dict[str, Any]]:
  rows = []
  for seed in range(config.num_seeds):
    key = run_key(config, seed)
    for placement in (None, "after_dropout", "before_dropout"):
      model = MLP(_features(data), list(config.batchnorm_hidden), data.num_classes,
                  input_rate=0.2, hidden_rate=0.5, batch_norm=placement,
                  rngs=nnx.Rngs(params=jax.random.fold_in(key, 0), dropout=0))
      fit_classifier(model, data.train, key=jax.random.fold_in(key, 1), epochs=config.epochs,
                     batch_size=config.batch_size, learning_rate=config.learning_rate,
                     epoch_hooks=study.curve_hooks(f"{placement or 'none'}-seed{seed}"))
      rows.append({"batch_norm": placement or "none", "seed": seed,
                   **_evaluate_model(config, model, data.test, jax.random.fold_in(key, 2))})
  return rows


def lstm_modes(config, data) -> list[dict[str, Any]]:
  rows = []
  rate = config.lstm_rate
  for seed in range(config.num_seeds):
    key = run_key(config, seed)
    for mode, rates in (("no dropout", (0.0, 0.0, 0.0)),
                        ("naive (fresh mask per step)", (rate, rate, rate)),
                        ("variational (mask shared over time)", (rate, rate, rate))):
      model = SequenceClassifier(
          data.train.images.shape[2], config.lstm_hidden, data.num_classes,
          mode="naive" if "naive" in mode else "variational", input_rate=rates[0],
          state_rate=rates[1], output_rate=rates[2],
          rngs=nnx.Rngs(params=jax.random.fold_in(key, 0), dropout=0))
      fit_classifier(model, data.train, key=jax.random.fold_in(key, 1), epochs=config.epochs,
                     batch_size=config.batch_size, learning_rate=config.learning_rate,
                     epoch_hooks=study.curve_hooks(f"{mode.split()[0]}-seed{seed}"))
      rows.append({"lstm": mode, "rate": rates[0], "seed": seed,
                   **_evaluate_model(config, model, data.test, jax.random.fold_in(key, 2))})
  return rows


def _plot(paired):
  plt = reporting.pyplot()
  shown = ("accuracy_mc", "nll_mc", "ece_mc")
  fig, axes = plt.subplots(len(BASELINES), len(shown), figsize=(15, 4 * len(BASELINES)),
                           squeeze=False)
  for row_axes, baseline in zip(axes, BASELINES, strict=True):
    rows = [p for p in paired if p["baseline"] == baseline]
    names = [p["variant"] for p in rows]
    y = np.arange(len(names))
    for ax, metric in zip(row_axes, shown, strict=True):
      means = np.asarray([p[metric] for p in rows])
      errors = 2 * np.asarray([p[f"{metric}_se"] for p in rows])
      colors = ["tab:green" if p[f"{metric}_decided"] and _better(metric, p[metric]) else
                "tab:red" if p[f"{metric}_decided"] else "tab:gray" for p in rows]
      for yi, mean, error, color in zip(y, means, errors, colors, strict=True):
        ax.errorbar(mean, yi, xerr=error, fmt="o", color=color, capsize=3)
      ax.axvline(0.0, color="k", lw=1)
      ax.set_yticks(y, names)
      ax.set_title(f"{_header(metric)}: variant - {baseline} (± 2 s.e.)")
  return fig


TUNE_METRICS = ("nll_mc", "nll_det", "brier_mc", "brier_det", "ece_mc", "ece_det")


# Srivastava et al. 2014, Table 2 (MNIST test error %), as summarised in
# ../shared/reference/published-results.md §3 (no copy of the paper is held here).
PUBLISHED_MNIST = (
    ("Standard NN, logistic, 2 x 800 (Simard et al. 2003)", 1.60),
    ("Dropout NN, logistic, 3 x 1024", 1.35),
    ("Dropout NN, ReLU, 3 x 1024", 1.25),
    ("Dropout NN + max-norm, ReLU, 3 x 1024", 1.06),
)
PUBLISHED_SOURCE = "Srivastava et al. 2014, Table 2 and App. B.1 (published-results.md §3)"


def published_mnist_section(config: ml_collections.ConfigDict, data: SplitDataset,
                            rows: list[dict[str, Any]], paired: list[dict[str, Any]]) -> str:
  """Srivastava et al.'s MNIST errors beside ours (no dropout and standard dropout, weight
  scaling as theirs), with the protocol table that says how far apart the setups are."""
  by_variant = {r["variant"]: r for r in rows}
  ours = []
  for variant in ("none", "dropout"):
    if variant in by_variant:
      r = by_variant[variant]
      ours.append((f"ours: {variant}, residual CNN {tuple(config.channels)}",
                   reporting.format_mean_se(100 * (1 - r["accuracy_det"]),
                                            100 * r["accuracy_det_se"], ".2f")))
  table = ["| model | test error % (weight scaling) | source |", "|---|---|---|",
           *[f"| {name} | {error:.2f} | {PUBLISHED_SOURCE} |" for name, error in PUBLISHED_MNIST],
           *[f"| {name} | {error} | this run, mean ± s.e. over {config.num_seeds} seeds |"
             for name, error in ours]]
  gap = next((p for p in paired if p["variant"] == "dropout" and p["baseline"] == "none"), None)
  text = ""
  if gap is not None:
    decided = "more" if gap["accuracy_det_decided"] else "not more"
    text = (f"Dropout minus no dropout, paired by seed: "
            f"{100 * gap['accuracy_det']:+.2f} ± {100 * gap['accuracy_det_se']:.2f} points of "
            f"accuracy ({decided} than 2 s.e.). In Table 2 dropout lowers the error of much "
            "larger MLPs trained far longer; the rows are not the same experiment.\n\n")
  protocol = [
      ("network", f"residual CNN, channels {tuple(config.channels)}, dense "
       f"{config.dense_features}", "MLPs, 3 x 1024 (ReLU or logistic); 2 x 800 for the "
       "standard net", PUBLISHED_SOURCE),
      ("training images", f"{data.train.images.shape[0]} (validation "
       f"{data.validation.images.shape[0]} held out)", "60,000", PUBLISHED_SOURCE),
      ("training", f"Adam lr {config.learning_rate:g}, batch {config.batch_size}, "
       f"{config.epochs} epochs", "SGD, momentum 0.5 to 0.95, learning-rate decay, about "
       "1e6 updates", PUBLISHED_SOURCE),
      ("dropout rates", "each variant's, tuned on the validation split (table above)",
       "keep 0.8 on the input, 0.5 on hidden units", PUBLISHED_SOURCE),
      ("max-norm", "none", "on the max-norm rows only", PUBLISHED_SOURCE),
      ("test set", f"all {data.test.images.shape[0]} images", "the 10,000 test images",
       PUBLISHED_SOURCE),
  ]
  return ("\n**Published MNIST numbers beside ours** (Srivastava et al. 2014, Table 2; "
          "theirs are single numbers, ours mean ± s.e.):\n\n" + "\n".join(table) + "\n\n"
          + text + "Protocol:\n\n" + reporting.protocol_table(
              [{"setting": a, "ours": b, "reference": c, "source": d}
               for a, b, c, d in protocol]))


def check_config(config: ml_collections.ConfigDict) -> None:
  """Refuses a tuning setup that cannot run, before anything is trained or recorded."""
  if config.tune_metric not in TUNE_METRICS:
    raise ValueError(f"config.tune_metric must be one of {TUNE_METRICS} (lower is better); "
                     f"got {config.tune_metric!r}.")
  if not config.tune_scales or any(s <= 0 for s in config.tune_scales):
    raise ValueError("config.tune_scales must be a non-empty tuple of positive rate "
                     f"multipliers; got {tuple(config.tune_scales)}.")
  for name in ("num_seeds", "sweep_seeds"):
    config_checks.check_seed_count(config, name)
  for variant in filter(is_tuned, config.variants):
    for scale in config.tune_scales:
      rates = scaled_rates(config, variant, scale)
      if not all(0.0 <= r < 1.0 for r in rates):
        raise ValueError(
            f"config.tune_scales: {scale:g} x the rates of {variant!r} gives (conv, dense) = "
            f"{rates}; every tuned rate must lie in [0, 1).")


def _timed(compute) -> dict[str, Any]:
  tic = time.perf_counter()
  rows = compute()
  return {"rows": rows, "seconds": time.perf_counter() - tic}


def train_and_evaluate(config: ml_collections.ConfigDict, sections: study.Sections
                       ) -> study.Report:
  """Runs every variant of ``config.variants`` (resuming finished runs); the report."""
  data = sections.data
  start = time.perf_counter()
  rows = [evaluate_variant(config, variant, data, sections) for variant in config.variants]
  baseline = next((r["step_ms"] for r in rows if r["variant"] == "none"), None)
  for row in rows:
    row["overhead"] = row["step_ms"] / baseline if baseline else None
  paired = paired_comparisons(rows)
  section_seconds = {}

  def section(name, compute):
    timed = sections(name, lambda: _timed(compute))
    section_seconds[name] = timed["seconds"]
    return timed["rows"]

  sweep = section("rate_sweep", lambda: rate_sweep(config, data))
  sweep_summary = summarise_seeds(sweep, ("model", "train_examples", "rate"),
                                  ("accuracy", "nll", "ece"), baseline={"rate": 0.0})
  bn = section("batchnorm", lambda: batchnorm_placements(config, data))
  bn_summary = summarise_seeds(bn, ("batch_norm",), METRICS, baseline={"batch_norm": "none"})
  lstm = section("lstm", lambda: lstm_modes(config, data))
  lstm_summary = summarise_seeds(lstm, ("lstm",), METRICS, baseline={"lstm": "no dropout"})
  wall = time.perf_counter() - start
  total_train = sum(r["train_seconds"] for r in rows)
  total = sum(r["seconds"] for r in rows) + sum(section_seconds.values())
  scales = ", ".join(f"{s:g}" for s in config.tune_scales)
  n = config.num_seeds
  header = (
      f"Variant comparison on {config.dataset} ({data.train.images.shape[0]} train / "
      f"{data.validation.images.shape[0]} validation / {data.test.images.shape[0]} test), "
      f"{config.epochs} epochs, {n} seeds (`--config.seed={config.seed}`), MC with "
      f"{config.mc_samples} samples. Each fixed-rate variant is tuned on seed 0: it trains at "
      f"{scales} x its configured rates and the lowest validation {config.tune_metric} picks "
      "the scale (`tuned x`). Every variant then trains with each seed at that scale. "
      "Concrete dropout learns its rates (initial rates shown). Test metrics are mean ± "
      f"standard error over the {n} seeds. Computing every run and section took "
      f"{total:.0f}s ({total / 60:.1f} min; training {total_train:.0f}s of it), on the CPU "
      "named in the README.\n\n"
  )
  table_rows = reporting.mean_se_cells(rows, METRICS)
  for cells, row in zip(table_rows, rows, strict=True):
    cells["step_ms"] = reporting.format_mean_se(row["step_ms"], row["step_ms_se"], ".2f")
  table = reporting.markdown_table(table_rows, (
      ("variant", "variant", "s"), ("scale", "tuned x", "g"), ("conv_rate", "conv rate", ".3f"),
      ("dense_rate", "dense rate", ".3f"), *((m, _header(m), "s") for m in METRICS),
      ("step_ms", "ms/step", "s"), ("overhead", "time vs none", ".2f")))
  paired_rows = []
  for p in paired:
    cells = {"variant": p["variant"], "baseline": p["baseline"]}
    for m in PAIRED_METRICS:
      mark = "*" if p[f"{m}_decided"] else ""
      cells[m] = reporting.format_mean_se(p[m], p[f"{m}_se"], "+.4f") + mark
    paired_rows.append(cells)
  paired_table = reporting.markdown_table(paired_rows, (
      ("variant", "variant", "s"), ("baseline", "minus", "s"),
      *((m, f"Δ {_header(m)}", "s") for m in PAIRED_METRICS)))
  found = findings(paired)
  metric_columns = tuple((m, _header(m), "s") for m in ("accuracy_det", "accuracy_mc",
                                                           "nll_det", "nll_mc", "ece_mc"))
  delta_columns = (("d_accuracy_mc", "Δ acc (MC)", "s"), ("d_nll_mc", "Δ NLL (MC)", "s"))
  extra = (
      f"\n**Paired differences** (variant minus baseline, per seed, mean ± s.e. over {n} "
      "seeds; `*`: more than 2 s.e. from 0; lower is better except accuracy). With "
      f"{n} seeds a difference with no true effect passes 2 s.e. with probability "
      f"{reporting.chance_of_two_se(n):.2f} (Student's t, {n - 1} degrees of freedom), and "
      f"the table makes {len(paired) * len(PAIRED_METRICS)} comparisons: read a single "
      "mark near 2 s.e. as a lead to rerun with more seeds, not as a finding.\n\n"
      + paired_table
      + "\n**What the seeds decide** (generated from the table above):\n\n"
      + "\n".join(found) + "\n"
      + "\n**When does dropout hurt?** MLPs on a fraction of the training set and on all of "
      "it, about the same number of steps, test metrics (mean ± s.e. over "
      f"{config.sweep_seeds} seeds; Δ: minus rate 0 with the same seed, `*` beyond 2 s.e.); "
      "input rate = 0.4 x hidden rate.\n\n"
      + reporting.markdown_table(
          reporting.mean_se_cells(sweep_summary, ("accuracy", "nll", "ece")), (
          ("model", "model", "s"), ("train_examples", "train examples", "d"),
          ("rate", "hidden rate", ".1f"), ("accuracy", "accuracy", "s"),
          ("nll", "NLL", "s"), ("ece", "ECE", "s"), ("d_accuracy", "Δ accuracy", "s"),
          ("d_nll", "Δ NLL", "s")))
      + f"\n**Dropout and BatchNorm** (MLP, rates 0.2/0.5, {n} seeds; `after_dropout`: "
      "dropout feeds BatchNorm; `before_dropout`: dropout only after the last BatchNorm; Δ: "
      "minus `none`).\n\n"
      + reporting.markdown_table(reporting.mean_se_cells(bn_summary, METRICS), (
          ("batch_norm", "BatchNorm", "s"), *metric_columns, *delta_columns))
      + f"\n**LSTM on the {config.dataset} images read row by row** "
      f"({data.train.images.shape[1]} steps, {n} seeds), variational vs naive dropout (Δ: "
      "minus no dropout).\n\n"
      + reporting.markdown_table(reporting.mean_se_cells(lstm_summary, METRICS), (
          ("lstm", "dropout", "s"), *metric_columns, *delta_columns))
  )
  if config.dataset == "mnist":
    extra += published_mnist_section(config, data, rows, paired)
  csv_keys = ("variant", "scale", "conv_rate", "dense_rate", "validation_score",
              *(k for m in (*METRICS, "step_ms") for k in (m, f"{m}_se")), "overhead",
              "train_seconds")
  summary = {r["variant"]: {"accuracy_mc": r["accuracy_mc"], "ece_mc": r["ece_mc"]} for r in rows}
  out = {"rows": rows, "paired": paired, "findings": found, "summary": summary,
         "rate_sweep": sweep, "batchnorm": bn, "lstm": lstm, "compute_seconds": total,
         "wall_seconds": wall}
  return study.Report(summary=out, markdown=header + table + extra,
                      rows=[{k: r.get(k) for k in csv_keys} for r in rows],
                      figures={"variant_comparison.png": _plot(paired)})


STUDY = study.Study("variant_comparison", train_and_evaluate, load_data=load_dataset)
