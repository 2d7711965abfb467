"""The variant comparison: one architecture and budget, every dropout variant.

Resumable: each variant's result is written atomically to ``workdir/variants/NAME.json``
when it finishes, and a restarted run loads finished variants instead of retraining them
(each variant is a deterministic function of the config, so the numbers are the same).
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

from dropjax import io, layers, metrics
from dropjax.data import load_digits
from dropjax.mc import mc_predict, module_forward
from dropjax.models import ConvNet
from dropjax.train import fit_classifier, predict_probabilities
from experiments import reporting

COLUMNS = (
    ("variant", "variant", "s"),
    ("conv_rate", "conv rate", ".2f"),
    ("dense_rate", "dense rate", ".2f"),
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


def _evaluate(probs: jax.Array, labels: np.ndarray, bins: int) -> dict[str, float]:
  return {
      "accuracy": float(metrics.accuracy(probs, labels)),
      "nll": float(metrics.negative_log_likelihood(probs, labels)),
      "ece": float(metrics.expected_calibration_error(probs, labels, bins)),
      "brier": float(metrics.brier_score(probs, labels)),
  }


def run_variant(config: ml_collections.ConfigDict, variant: str, data) -> dict[str, Any]:
  """Trains and evaluates one variant; a pure function of the config."""
  root = jax.random.key(config.seed)
  init_key, train_key, mc_key = (jax.random.fold_in(root, i) for i in range(3))
  # The same init key for every variant: where shapes agree the initial weights agree.
  model = ConvNet(
      data.train.images.shape[-1], data.num_classes, spatial_size=data.train.images.shape[1],
      variant=variant, conv_rate=config.conv_rate[variant], dense_rate=config.dense_rate[variant],
      channels=tuple(config.channels), dense_features=config.dense_features,
      block_size=config.block_size, rngs=nnx.Rngs(params=init_key, dropout=0),
  )
  n_train = data.train.images.shape[0]
  tic = time.perf_counter()
  history = fit_classifier(
      model, data.train, key=train_key, epochs=config.epochs, batch_size=config.batch_size,
      learning_rate=config.learning_rate, weight_decay=config.weight_decay,
      weight_regularizer=config.concrete_length_scale**2 / n_train,
      dropout_regularizer=1.0 / n_train,
      progress=lambda s: logging.log_every_n_seconds(
          logging.INFO, "%s: epoch %d/%d loss %.4f, ETA %.0fs", 10, variant, s["epoch"],
          s["epochs"], s["loss"], s["eta_seconds"]),
  )
  train_seconds = time.perf_counter() - tic
  test_x, test_y = jnp.asarray(data.test.images), data.test.labels
  det = _evaluate(predict_probabilities(model, test_x), test_y, config.ece_bins)
  forward = module_forward(model)
  mc_probs = jax.jit(
      lambda k, x: mc_predict(forward, k, x, config.mc_samples, chunk_size=config.mc_chunk_size)
  )(mc_key, test_x)
  mc = _evaluate(mc_probs, test_y, config.ece_bins)
  # Steady-state step time: the first epoch includes compilation.
  steady = history["epoch_seconds"][1:] or history["epoch_seconds"]
  steps_per_epoch = history["steps"] / config.epochs
  result = {
      "variant": variant,
      "conv_rate": config.conv_rate[variant],
      "dense_rate": config.dense_rate[variant],
      **{f"{k}_det": v for k, v in det.items()},
      **{f"{k}_mc": v for k, v in mc.items()},
      "final_train_loss": history["loss"][-1],
      "train_seconds": train_seconds,
      "step_ms": 1e3 * float(np.median(steady)) / steps_per_epoch,
  }
  learned = [float(m.rate) for _, m in nnx.iter_modules(model)
             if isinstance(m, layers.ConcreteDropout)]
  if learned:
    result["learned_rates"] = learned
  return result


def _plot(rows, path):
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

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
  fig.tight_layout()
  tmp = path + ".tmp.png"
  fig.savefig(tmp, dpi=100)
  plt.close(fig)
  os.replace(tmp, path)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs every variant of ``config.variants`` (resuming finished ones) and writes the report."""
  if config.dataset != "digits":
    raise ValueError(f"config.dataset must be 'digits' for now; got {config.dataset!r}.")
  reporting.start_workdir(config, workdir)
  data = load_digits(seed=config.split_seed)
  start = time.perf_counter()
  rows = []
  for variant in config.variants:
    path = os.path.join(workdir, "variants", f"{variant}.json")
    result = reporting.load_json(path)
    if result is None:
      result = run_variant(config, variant, data)
      io.write_json_atomic(path, result)
      logging.info("%s: acc %.4f / %.4f (det / MC), ECE %.4f / %.4f, %.1fs", variant,
                   result["accuracy_det"], result["accuracy_mc"], result["ece_det"],
                   result["ece_mc"], result["train_seconds"])
    else:
      logging.info("%s: loaded the finished result from %s", variant, path)
    rows.append(result)
  baseline = next((r["step_ms"] for r in rows if r["variant"] == "none"), None)
  for row in rows:
    row["overhead"] = row["step_ms"] / baseline if baseline else None
  wall = time.perf_counter() - start
  table = reporting.markdown_table(rows, COLUMNS)
  total_train = sum(r["train_seconds"] for r in rows)
  header = (
      f"Variant comparison on the embedded digits ({data.train.images.shape[0]} train / "
      f"{data.test.images.shape[0]} test), {config.epochs} epochs, seed {config.seed}, "
      f"MC with {config.mc_samples} samples. Training took {total_train:.0f}s in all "
      f"(this invocation {wall:.0f}s).\n\n"
  )
  io.write_text_atomic(os.path.join(workdir, "results.md"), header + table)
  io.write_csv_atomic(os.path.join(workdir, "results.csv"),
                      [{k: r.get(k) for k, _, _ in COLUMNS} | {"train_seconds": r["train_seconds"]}
                       for r in rows])
  _plot(rows, os.path.join(workdir, "variant_comparison.png"))
  summary = {r["variant"]: {"accuracy_mc": r["accuracy_mc"], "ece_mc": r["ece_mc"]} for r in rows}
  out = {"rows": rows, "summary": summary, "wall_seconds": wall}
  io.write_json_atomic(os.path.join(workdir, "metrics.json"), out)
  print(header + table)
  return out
