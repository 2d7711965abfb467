"""The ensemble-interpretation study: MC averaging with k samples vs weight scaling, exactly."""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import nnx

from dropjax import metrics, prng
from dropjax.ensemble import exact_ensemble
from dropjax.mc import mc_running_means, module_forward
from dropjax.models import MLP
from dropjax.train import fit_classifier, predict_probabilities
from experiments import config_checks, datasets, reporting, study


def run_key(config: ml_collections.ConfigDict, seed: int) -> jax.Array:
  """Seed ``seed``'s root key, ``fold_in(key(config.seed), seed)``; its ``init``, ``train``
  and ``mc`` streams are folds 0, 1, 2."""
  return jax.random.fold_in(prng.key(config.seed, config.prng_impl), seed)


def seed_run(config: ml_collections.ConfigDict, train, test, seed: int) -> dict[str, Any]:
  """Trains seed ``seed``'s MLP and compares MC averaging over k sub-networks with weight
  scaling on every test image: for each k, both error rates and their paired difference
  (`reporting.paired_error_difference`). The k-sample MC means are running means of one
  stream of ``max(ks)`` samples (`mc_running_means`), so k's estimates are nested."""
  init_key, train_key, mc_key = (jax.random.fold_in(run_key(config, seed), i)
                                 for i in range(3))
  in_features = int(np.prod(train.images.shape[1:]))
  model = MLP(in_features, list(config.hidden), 10, input_rate=config.input_rate,
              hidden_rate=config.hidden_rate, rngs=nnx.Rngs(params=init_key, dropout=0))
  tic = time.perf_counter()
  history = fit_classifier(
      model, train, key=train_key, epochs=config.epochs, batch_size=config.batch_size,
      learning_rate=config.learning_rate, max_norm=config.max_norm,
      progress=lambda s: logging.log_every_n_seconds(
          logging.INFO, "seed %d: epoch %d/%d loss %.4f, ETA %.0fs", 10, seed, s["epoch"],
          s["epochs"], s["loss"], s["eta_seconds"]),
      epoch_hooks=study.curve_hooks())
  train_seconds = time.perf_counter() - tic
  x, labels = jnp.asarray(test.images), np.asarray(test.labels)
  wrong_ws = np.asarray(jnp.argmax(predict_probabilities(model, x), -1)) != labels
  forward = module_forward(model)
  tic = time.perf_counter()
  means = jax.jit(lambda f, k, x: mc_running_means(
      lambda kk, xx: jax.nn.softmax(f(kk, xx)), k, x, tuple(config.ks),
      chunk_size=config.mc_chunk_size))(forward, mc_key, x)
  wrong_mc = np.asarray(jnp.argmax(means, -1)) != labels
  mc_seconds = time.perf_counter() - tic
  per_k = []
  for k, wrong in zip(config.ks, wrong_mc, strict=True):
    paired = reporting.paired_error_difference(wrong, wrong_ws)
    per_k.append({"k": k, "mc_error": float(wrong.mean()),
                  "mc_minus_ws": paired["difference"], "mc_minus_ws_se": paired["se"],
                  "mc_only_wrong": paired["a_only"], "ws_only_wrong": paired["b_only"]})
  return {"seed": seed, "ws_error": float(wrong_ws.mean()), "per_k": per_k,
          "final_train_loss": history["loss"][-1], "train_seconds": train_seconds,
          "mc_seconds": mc_seconds, "test_images": int(labels.size)}


def summarise_seeds(config: ml_collections.ConfigDict,
                    runs: list[dict[str, Any]]) -> dict[str, Any]:
  """Mean ± s.e. over seeds of both errors and of MC(k) - WS per k; which k decide.

  A difference is decided when its mean over seeds is more than 2 s.e. from 0.
  ``k_match`` is the first k from which MC's mean error is at most weight scaling's at
  every larger k; ``k_not_worse`` the first k from which no larger k is decided worse than
  weight scaling (the paper's "MC reaches weight scaling"); ``k_undecided`` the first k
  from which no larger k's difference is decided either way.
  """
  ws = reporting.seed_statistics([r["ws_error"] for r in runs])
  rows = []
  for j, k in enumerate(config.ks):
    mc = reporting.seed_statistics([r["per_k"][j]["mc_error"] for r in runs])
    diffs = [r["per_k"][j]["mc_minus_ws"] for r in runs]
    diff = reporting.seed_statistics(diffs)
    # A seed's own 95% interval (paired over its test images) excludes 0.
    seeds_decided = sum(abs(r["per_k"][j]["mc_minus_ws"]) > 1.96 * r["per_k"][j]
                        ["mc_minus_ws_se"] for r in runs)
    rows.append({"k": k, "mc_error": mc[0], "mc_error_se": mc[1],
                 "mc_minus_ws": diff[0], "mc_minus_ws_se": diff[1],
                 "decided": reporting.exceeds_two_se(*diff), "seeds_decided": int(seeds_decided),
                 "mc_minus_ws_seeds": diffs})

  def first_from(holds):
    index = len(rows)
    while index > 0 and holds(rows[index - 1]):
      index -= 1
    return rows[index]["k"] if index < len(rows) else None

  return {"ws_error": ws[0], "ws_error_se": ws[1], "rows": rows,
          "k_match": first_from(lambda r: r["mc_minus_ws"] <= 0),
          "k_not_worse": first_from(lambda r: not (r["decided"] and r["mc_minus_ws"] > 0)),
          "k_undecided": first_from(lambda r: not r["decided"]),
          "num_seeds": len(runs), "test_images": runs[0]["test_images"],
          "train_seconds": sum(r["train_seconds"] for r in runs),
          "mc_seconds": sum(r["mc_seconds"] for r in runs)}


def exact_comparison(config, train, test) -> list[dict[str, Any]]:
  """Tiny nets whose 2**n sub-networks are enumerated: AM vs NWGM vs weight scaling."""
  in_features = int(np.prod(train.images.shape[1:]))
  n = config.exact_units
  x = jnp.asarray(test.images.reshape(len(test.labels), -1))
  labels = np.asarray(test.labels)
  rows = []
  # Every net's initialisation and training start from this one key, as they did from
  # config.seed before the generator was a config field.
  net_key = prng.key(config.seed, config.prng_impl)
  for rate in config.exact_rates:
    for name, hidden, rates in (
        ("dropout before the softmax layer", [n], [rate]),
        ("dropout before a ReLU layer", [n, 32], [rate, 0.0]),
    ):
      model = MLP(in_features, hidden, 10, input_rate=0.0, hidden_rate=rates,
                  rngs=nnx.Rngs(params=net_key, dropout=0))
      fit_classifier(model, train, key=net_key, epochs=config.exact_epochs,
                     batch_size=config.batch_size, learning_rate=config.learning_rate,
                     epoch_hooks=study.curve_hooks(f"rate{rate:g}-hidden{len(hidden)}"))
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


def _plot(summary, dataset):
  plt = reporting.pyplot()
  rows = summary["rows"]
  ks = np.asarray([r["k"] for r in rows])
  mc, mc_se = (np.asarray([r[m] for r in rows]) for m in ("mc_error", "mc_error_se"))
  diff, diff_se = (np.asarray([r[m] for r in rows]) for m in ("mc_minus_ws", "mc_minus_ws_se"))
  fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
  left.plot(ks, 100 * mc, "o-", label="MC model averaging (k samples)")
  left.fill_between(ks, 100 * (mc - 2 * mc_se), 100 * (mc + 2 * mc_se), alpha=0.3)
  ws, ws_se = summary["ws_error"], summary["ws_error_se"]
  left.axhline(100 * ws, color="k", ls="--", label="weight scaling")
  left.axhspan(100 * (ws - 2 * ws_se), 100 * (ws + 2 * ws_se), color="k", alpha=0.1)
  left.set_ylabel("test error (%)")
  left.set_title(f"MC averaging vs weight scaling ({dataset}), ±2 s.e.")
  left.legend()
  right.errorbar(ks, 100 * diff, yerr=200 * diff_se, fmt="o-", capsize=3)
  right.axhline(0.0, color="k", lw=0.8)
  right.set_ylabel("MC(k) - weight scaling (error points)")
  right.set_title(f"paired by seed, mean ± 2 s.e. over {summary['num_seeds']} seeds")
  for ax in (left, right):
    ax.set_xscale("log")
    ax.set_xlabel("k (number of sampled sub-networks)")
  return fig


def check_config(config: ml_collections.ConfigDict) -> None:
  """The study's rules beyond `config_checks.check_fields`, checked before any work.

  Args:
    config: an ``ensemble_interpretation`` config.

  Raises:
    config_checks.ConfigError: naming the field and the allowed values.
  """
  config_checks.check_dataset(config)
  config_checks.check_seed_count(config)
  config_checks.check_increasing(config, "ks")
  if config.exact_units > 20:
    raise config_checks.ConfigError(
        f"config.exact_units = {config.exact_units}: the exact comparison enumerates "
        "2**exact_units sub-networks; at most 20.")


# Srivastava et al. 2014 as summarised in ../shared/reference/published-results.md §3 (Table
# 2, App. B.1, Fig. 11); no copy of the paper's text or code is held here.
REFERENCE = {
    "network": "not given for Fig. 11 in our summary; Table 2's ReLU nets are 3 x 1024",
    "retention": "0.8 input / 0.5 hidden",
    "optimiser": "SGD, momentum 0.5 to 0.95, learning-rate decay, about 1e6 updates",
    "max_norm": "max-norm on every unit (c not in our summary; a reproducer used 2.0)",
    "k": "k = 1 .. about 100 on the plot; MC reaches WS at k = about 50",
    "error": "about 1.1-1.3% (read off Fig. 11); Table 2: 1.25% (3 x 1024 ReLU), 1.06% "
             "with max-norm",
    "seeds": "not stated; the plot shows a one-std band",
}
SOURCE = "Srivastava et al. 2014, via published-results.md §3"


def protocol_rows(config: ml_collections.ConfigDict, summary: dict[str, Any],
                  train_images: int) -> list[dict[str, str]]:
  """The report's protocol table: our settings (from the config) beside the paper's."""
  max_norm = f"c = {config.max_norm:g}"
  ours = {
      "network": f"MLP {tuple(config.hidden)}, ReLU",
      "retention": f"{1 - config.input_rate:g} input / {1 - config.hidden_rate:g} hidden",
      "optimiser": f"Adam, lr {config.learning_rate:g}, batch {config.batch_size}, "
                   f"{config.epochs} epochs on {train_images} images",
      "max_norm": max_norm,
      "k": f"k = {', '.join(str(k) for k in config.ks)}: running means of one stream of "
           f"{max(config.ks)} samples per seed",
      "error": f"{100 * summary['ws_error']:.2f} ± {100 * summary['ws_error_se']:.2f}% "
               f"(weight scaling, {summary['test_images']} test images)",
      "seeds": f"{summary['num_seeds']} seeds; MC - WS paired by seed and by test image",
  }
  return [{"setting": name, "ours": ours[name], "reference": REFERENCE[name], "source": SOURCE}
          for name in REFERENCE]


def findings(summary: dict[str, Any], published_k_match: int) -> list[str]:
  """The study's findings, generated from the seed statistics."""
  rows = summary["rows"]
  first, last = rows[0], rows[-1]

  def diff(row):
    verdict = "decided" if row["decided"] else "within 2 s.e., not decided"
    return (f"{100 * row['mc_minus_ws']:+.3f} ± {100 * row['mc_minus_ws_se']:.3f} points "
            f"({verdict}; {row['seeds_decided']} of {summary['num_seeds']} seeds' own 95% "
            "intervals over test images exclude 0)")

  out = [f"MC(k) - weight scaling at k = {first['k']}: {diff(first)}; at k = {last['k']}: "
         f"{diff(last)}."]
  k_reach = summary["k_not_worse"]
  if k_reach is None:
    out.append(f"MC stays worse than weight scaling by more than 2 s.e. up to k = "
               f"{last['k']}: the paper's match at k = about {published_k_match} is not "
               "reproduced.")
  else:
    out.append(f"From k = {k_reach} on, MC is never worse than weight scaling by more than "
               f"2 s.e. (paper: MC reaches weight scaling at k = about {published_k_match}).")
  if last["decided"]:
    side = "worse" if last["mc_minus_ws"] > 0 else "better"
    out.append(f"At k = {last['k']} MC is {side} than weight scaling by more than 2 s.e. "
               "(paper: slightly better, within one standard deviation).")
  k_match = summary["k_match"]
  out.append("MC's mean error is at or below weight scaling's " + (
      f"from k = {k_match} on." if k_match is not None else f"at no k up to {last['k']}."))
  return out


def train_and_evaluate(config: ml_collections.ConfigDict, sections: study.Sections
                       ) -> study.Report:
  start = time.perf_counter()
  data = datasets.load_classification(config.dataset, config.data_dir)
  train, test = data.train, data.test
  runs = []
  for seed in range(config.num_seeds):
    run = sections(f"seeds/seed{seed}", lambda seed=seed: seed_run(config, train, test, seed))
    logging.info("seed %d: weight scaling %.4f, MC at k = %d %.4f", seed, run["ws_error"],
                 run["per_k"][-1]["k"], run["per_k"][-1]["mc_error"])
    runs.append(run)
  summary = summarise_seeds(config, runs)
  exact = sections("exact", lambda: exact_comparison(config, train, test))
  wall = time.perf_counter() - start
  beyond = f"> {max(config.ks)}"
  mc_last = summary["rows"][-1]
  percent = lambda mean, se: reporting.format_mean_se(100 * mean, 100 * se, ".2f") + "%"
  text = [
      f"MC averaging vs weight scaling on {config.dataset} (MLP {tuple(config.hidden)}, keep "
      f"{1 - config.input_rate:g} input / {1 - config.hidden_rate:g} hidden, "
      f"{config.epochs} epochs, {summary['num_seeds']} seeds, k up to {max(config.ks)}; "
      f"training {summary['train_seconds']:.0f}s, MC {summary['mc_seconds']:.0f}s, "
      f"this invocation {wall:.0f}s). Mean ± s.e. over seeds.", "",
      "| | k where MC error reaches weight scaling | k from which MC is never decided worse | "
      "weight-scaling error | MC error at the largest k |",
      "|---|---|---|---|---|",
      f"| Srivastava et al. 2014, Fig. 11 (MNIST, read off the plot) | "
      f"~{config.published_k_match} | ~{config.published_k_match} (within one std) | "
      "~1.1-1.3% | within 1 std |",
      f"| ours | {summary['k_match'] or beyond} | {summary['k_not_worse'] or beyond} | "
      f"{percent(summary['ws_error'], summary['ws_error_se'])} | "
      f"{percent(mc_last['mc_error'], mc_last['mc_error_se'])} |", "",
      *[f"- {line}" for line in findings(summary, config.published_k_match)], "",
      "MC(k) - WS: the error-rate difference paired by seed (mean ± s.e. over seeds; "
      "decided: more than 2 s.e. from 0); seeds decided: how many seeds' own 95% interval, "
      "paired over the test images (McNemar's setting), excludes 0. With "
      f"{summary['num_seeds']} seeds a difference with no true effect passes 2 s.e. with "
      f"probability {reporting.chance_of_two_se(summary['num_seeds']):.2f} (Student's t), at "
      f"each of the {len(config.ks)} k: one isolated mark is a lead, not a finding.", "",
      reporting.markdown_table([{**r, "decided": "yes" if r["decided"] else "no"}
                                for r in summary["rows"]], (
          ("k", "k", "d"), ("mc_error", "MC error", ".4f"), ("mc_error_se", "s.e.", ".4f"),
          ("mc_minus_ws", "MC - WS", "+.4f"), ("mc_minus_ws_se", "s.e.", ".4f"),
          ("decided", "decided", "s"), ("seeds_decided", "seeds decided", "d"))),
      "Protocol:", "",
      reporting.protocol_table(protocol_rows(config, summary, len(train.labels))),
      "Exact averages over all 2^n sub-networks (test set):", "",
      reporting.markdown_table(exact, (
          ("network", "network", "s"), ("rate", "rate", ".1f"), ("units", "n", "d"),
          ("error_arithmetic", "error AM", ".4f"), ("error_geometric", "error NWGM", ".4f"),
          ("error_weight_scaling", "error WS", ".4f"), ("nll_arithmetic", "NLL AM", ".4f"),
          ("nll_weight_scaling", "NLL WS", ".4f"),
          ("max_gap_geometric_ws", "max |NWGM - WS|", ".2e"),
          ("max_gap_arithmetic_ws", "max |AM - WS|", ".2e"))),
  ]
  return study.Report(
      summary={"summary": summary, "runs": runs, "exact": exact, "wall_seconds": wall},
      markdown="\n".join(text),
      rows=[{k: v for k, v in r.items() if k != "mc_minus_ws_seeds"} for r in summary["rows"]],
      figures={"mc_vs_weight_scaling.png": _plot(summary, config.dataset)},
      tables={"exact.csv": exact})


STUDY = study.Study("ensemble_interpretation", train_and_evaluate)
