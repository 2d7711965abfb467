"""The ensemble-interpretation study: MC averaging with k samples vs weight scaling, exactly."""

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

from dropjax import io, metrics
from dropjax.ensemble import exact_ensemble
from dropjax.mc import mc_sample, module_forward
from dropjax.models import MLP
from dropjax.train import ensemble_member, fit_classifier, fit_ensemble, predict_probabilities
from experiments import config_checks, datasets, reporting


def mc_versus_weight_scaling(config, train, test) -> dict[str, Any]:
  in_features = int(np.prod(train.images.shape[1:]))
  make = lambda rngs: MLP(in_features, list(config.hidden), 10, input_rate=config.input_rate,
                          hidden_rate=config.hidden_rate, rngs=rngs)
  root = jax.random.key(config.seed)
  keys = jax.random.split(jax.random.fold_in(root, 0), config.num_train_seeds)
  tic = time.perf_counter()
  graphdef, states, _ = fit_ensemble(make, train, keys=keys, epochs=config.epochs,
                                     batch_size=config.batch_size,
                                     learning_rate=config.learning_rate)
  train_seconds = time.perf_counter() - tic
  ks = list(config.ks)
  labels = np.asarray(test.labels)
  mc_errors = np.zeros((config.num_train_seeds, config.mc_repeats, len(ks)))
  ws_errors = np.zeros(config.num_train_seeds)
  x = jnp.asarray(test.images)
  for m in range(config.num_train_seeds):
    model = ensemble_member(graphdef, states, m)
    ws_errors[m] = 1.0 - float(metrics.accuracy(predict_probabilities(model, x), labels))
    forward = module_forward(model)
    sample = jax.jit(lambda k, x, forward=forward: mc_sample(
        lambda kk, xx: jax.nn.softmax(forward(kk, xx)), k, x, max(ks),
        chunk_size=config.mc_chunk_size))
    for r in range(config.mc_repeats):
      probs = sample(jax.random.fold_in(jax.random.fold_in(root, 1), m * 1000 + r), x)
      running = jnp.cumsum(probs, axis=0)
      # running[k - 1] sums k probability vectors: its arg-max is the k-sample MC mean's.
      predicted = jnp.argmax(running, axis=-1)
      for j, k in enumerate(ks):
        mc_errors[m, r, j] = 1.0 - float(jnp.mean(predicted[k - 1] == labels))
  flat = mc_errors.reshape(-1, len(ks))
  mean, std = flat.mean(0), flat.std(0)
  ws_mean = float(ws_errors.mean())
  ws_std = float(ws_errors.std())
  reaching = [k for k, e in zip(ks, mean, strict=True) if e <= ws_mean]
  # The paper's reading of Fig. 11: MC "within one standard deviation" of weight scaling.
  within = [k for k, e, s in zip(ks, mean, std, strict=True)
            if e - ws_mean <= max(s, ws_std)]
  return {"ks": ks, "mc_error_mean": mean.tolist(), "mc_error_std": std.tolist(),
          "ws_error_mean": ws_mean, "ws_error_std": ws_std,
          "k_match": reaching[0] if reaching else None,
          "k_within_one_std": within[0] if within else None, "train_seconds": train_seconds}


def exact_comparison(config, train, test) -> list[dict[str, Any]]:
  """Tiny nets whose 2**n sub-networks are enumerated: AM vs NWGM vs weight scaling."""
  in_features = int(np.prod(train.images.shape[1:]))
  n = config.exact_units
  x = jnp.asarray(test.images.reshape(len(test.labels), -1))
  labels = np.asarray(test.labels)
  rows = []
  for rate in config.exact_rates:
    for name, hidden, rates in (
        ("dropout before the softmax layer", [n], [rate]),
        ("dropout before a ReLU layer", [n, 32], [rate, 0.0]),
    ):
      model = MLP(in_features, hidden, 10, input_rate=0.0, hidden_rate=rates,
                  rngs=nnx.Rngs(params=config.seed, dropout=0))
      fit_classifier(model, train, key=jax.random.key(config.seed), epochs=config.exact_epochs,
                     batch_size=config.batch_size, learning_rate=config.learning_rate)
      w = [(d.kernel[...], d.bias[...]) for d in model.denses]
      h1 = jax.nn.relu(x @ w[0][0] + w[0][1])

      def logits(mask, x, w=w, h1=h1):
        h = h1 * mask @ w[1][0] + w[1][1]
        return h if len(w) == 2 else jax.nn.relu(h) @ w[2][0] + w[2][1]

      averages = exact_ensemble(logits, logits(jnp.ones(n), x), x, n, rate)
      row = {"network": name, "rate": rate, "units": n}
      for key, probs in (("arithmetic", averages.arithmetic), ("geometric", averages.geometric),
                         ("weight_scaling", averages.weight_scaling)):
        row[f"error_{key}"] = 1.0 - float(metrics.accuracy(probs, labels))
        row[f"nll_{key}"] = float(metrics.negative_log_likelihood(probs, labels))
      row["max_gap_geometric_ws"] = float(jnp.abs(averages.geometric
                                                  - averages.weight_scaling).max())
      row["max_gap_arithmetic_ws"] = float(jnp.abs(averages.arithmetic
                                                   - averages.weight_scaling).max())
      rows.append(row)
  return rows


def _plot(result, path, dataset):
  plt = reporting.pyplot()
  ks = np.asarray(result["ks"])
  mean, std = np.asarray(result["mc_error_mean"]), np.asarray(result["mc_error_std"])
  fig, ax = plt.subplots(figsize=(6, 4))
  ax.plot(ks, 100 * mean, "o-", label="MC model averaging (k samples)")
  ax.fill_between(ks, 100 * (mean - std), 100 * (mean + std), alpha=0.3)
  ws = result["ws_error_mean"]
  ax.axhline(100 * ws, color="k", ls="--", label="weight scaling")
  ax.axhspan(100 * (ws - result["ws_error_std"]), 100 * (ws + result["ws_error_std"]),
             color="k", alpha=0.1)
  ax.set_xscale("log")
  ax.set_xlabel("k (number of sampled sub-networks)")
  ax.set_ylabel("test error (%)")
  ax.set_title(f"MC averaging vs weight scaling ({dataset})")
  ax.legend()
  reporting.save_figure(fig, path)


def check_config(config: ml_collections.ConfigDict) -> None:
  """The study's rules beyond `config_checks.check_fields`, checked before any work.

  Args:
    config: an ``ensemble_interpretation`` config.

  Raises:
    config_checks.ConfigError: naming the field and the allowed values.
  """
  config_checks.check_dataset(config)
  if config.exact_units > 20:
    raise config_checks.ConfigError(
        f"config.exact_units = {config.exact_units}: the exact comparison enumerates "
        "2**exact_units sub-networks; at most 20.")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  reporting.start_workdir(config, workdir)
  start = time.perf_counter()
  data = datasets.load_classification(config.dataset, config.data_dir)
  train, test = data.train, data.test
  path = os.path.join(workdir, "mc_vs_ws.json")
  curve = reporting.load_json(path)
  if curve is None:
    curve = mc_versus_weight_scaling(config, train, test)
    io.write_json_atomic(path, curve)
  logging.info("MC reaches weight scaling at k = %s", curve["k_match"])
  path = os.path.join(workdir, "exact.json")
  exact = reporting.load_json(path)
  if exact is None:
    exact = exact_comparison(config, train, test)
    io.write_json_atomic(path, exact)
  _plot(curve, os.path.join(workdir, "mc_vs_weight_scaling.png"), config.dataset)
  curve_rows = [{"k": k, "mc_error": m, "mc_error_std": s} for k, m, s in
                zip(curve["ks"], curve["mc_error_mean"], curve["mc_error_std"], strict=True)]
  io.write_csv_atomic(os.path.join(workdir, "mc_vs_ws.csv"), curve_rows)
  io.write_csv_atomic(os.path.join(workdir, "exact.csv"), exact)
  wall = time.perf_counter() - start
  beyond = f"> {max(curve['ks'])}"
  k_match = curve["k_match"] if curve["k_match"] is not None else beyond
  k_within = curve["k_within_one_std"] if curve["k_within_one_std"] is not None else beyond
  text = [
      f"MC averaging vs weight scaling on {config.dataset} (MLP {tuple(config.hidden)}, keep "
      f"{1 - config.input_rate:g} input / {1 - config.hidden_rate:g} hidden, "
      f"{config.epochs} epochs, {config.num_train_seeds} training seeds x "
      f"{config.mc_repeats} MC repeats; training {curve['train_seconds']:.0f}s, "
      f"this invocation {wall:.0f}s).", "",
      "| | k where MC error reaches weight scaling | k where MC is within 1 std of it | "
      "weight-scaling error | MC error at the largest k |",
      "|---|---|---|---|---|",
      f"| Srivastava et al. 2014, Fig. 11 (MNIST, read off the plot) | "
      f"~{config.published_k_match} | ~{config.published_k_match} | ~1.1-1.3% | within 1 std |",
      f"| ours | {k_match} | {k_within} | {100 * curve['ws_error_mean']:.2f} ± "
      f"{100 * curve['ws_error_std']:.2f}% | {100 * curve['mc_error_mean'][-1]:.2f} ± "
      f"{100 * curve['mc_error_std'][-1]:.2f}% |", "",
      reporting.markdown_table(curve_rows, (("k", "k", "d"), ("mc_error", "MC error", ".4f"),
                                            ("mc_error_std", "std", ".4f"))),
      "Exact averages over all 2^n sub-networks (test set):", "",
      reporting.markdown_table(exact, (
          ("network", "network", "s"), ("rate", "rate", ".1f"), ("units", "n", "d"),
          ("error_arithmetic", "error AM", ".4f"), ("error_geometric", "error NWGM", ".4f"),
          ("error_weight_scaling", "error WS", ".4f"), ("nll_arithmetic", "NLL AM", ".4f"),
          ("nll_weight_scaling", "NLL WS", ".4f"),
          ("max_gap_geometric_ws", "max |NWGM - WS|", ".2e"),
          ("max_gap_arithmetic_ws", "max |AM - WS|", ".2e"))),
  ]
  io.write_text_atomic(os.path.join(workdir, "results.md"), "\n".join(text))
  print("\n".join(text))
  return {"curve": curve, "exact": exact, "wall_seconds": wall}
