"""Concrete dropout on an MLP classifier: learned per-layer rates against a fixed rate.

Two MLPs with the same initialisation, batch order and budget: one with concrete dropout
at every position (rates learned, initialised at ``config.init_rate``), one with the
hand-set rates of Srivastava et al. (input 0.2, hidden 0.5). The learned rates are
recorded after every epoch. Resumable per model: each result is written atomically to
``workdir/models/NAME.json``.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from flax import nnx

from dropjax import layers, metrics, prng
from dropjax.mc import mc_predict, module_forward
from dropjax.models import MLP
from dropjax.train import fit_classifier, predict_probabilities
from experiments import config_checks, datasets, reporting, study


def learned_rates(model: nnx.Module) -> list[float]:
  return [float(m.rate) for _, m in nnx.iter_modules(model)
          if isinstance(m, layers.ConcreteDropout)]


def run_model(config, data, name: str) -> dict[str, Any]:
  train, _, test = data
  root = prng.key(config.seed, config.prng_impl)
  concrete = name == "concrete"
  n = len(train.labels)
  model = MLP(int(np.prod(train.images.shape[1:])), list(config.hidden), 10,
              variant="concrete" if concrete else "dropout",
              input_rate=config.init_rate if concrete else config.fixed_rates[0],
              hidden_rate=config.init_rate if concrete else config.fixed_rates[1],
              weight_regularizer=config.length_scale**2 / n, dropout_regularizer=1.0 / n,
              rngs=nnx.Rngs(params=jax.random.fold_in(root, 0), dropout=0))
  history = [learned_rates(model)] if concrete else []

  def progress(stats):
    if concrete:
      history.append(learned_rates(model))
    logging.log_every_n_seconds(logging.INFO, "%s: epoch %d/%d loss %.4f", 10, name,
                                stats["epoch"], stats["epochs"], stats["loss"])

  tic = time.perf_counter()
  fit_classifier(model, train, key=jax.random.fold_in(root, 1), epochs=config.epochs,
                 batch_size=config.batch_size, learning_rate=config.learning_rate,
                 progress=progress, epoch_hooks=study.curve_hooks())
  seconds = time.perf_counter() - tic
  det = metrics.summary(predict_probabilities(model, test.images), test.labels, config.ece_bins)
  forward = module_forward(model)
  mc = metrics.summary(jax.jit(lambda f, k, x: mc_predict(
      f, k, x, config.mc_samples, chunk_size=config.mc_chunk_size))(
          forward, jax.random.fold_in(root, 2), test.images), test.labels, config.ece_bins)
  return {"model": name, "rates": learned_rates(model) if concrete else list(
      (config.fixed_rates[0], *[config.fixed_rates[1]] * len(config.hidden))),
          "rate_history": history, "error_det": 1 - det["accuracy"], "error_mc": 1 - mc["accuracy"],
          "nll_det": det["nll"], "nll_mc": mc["nll"], "ece_det": det["ece"], "ece_mc": mc["ece"],
          "seconds": seconds}


def check_config(config: ml_collections.ConfigDict) -> None:
  """The study's rules beyond `config_checks.check_fields`, checked before any work.

  Args:
    config: a ``concrete_mnist`` config.

  Raises:
    config_checks.ConfigError: naming the field and the allowed values.
  """
  config_checks.check_dataset(config)
  config_checks.check_initial_rate(config)


def train_and_evaluate(config: ml_collections.ConfigDict, sections: study.Sections
                       ) -> study.Report:
  data = datasets.load_splits(config)
  rows = [sections(f"models/{name}", lambda name=name: run_model(config, data, name))
          for name in ("concrete", "fixed")]
  columns = (("model", "model", "s"), ("rates", "rates (input, hidden...)", "s"),
             ("error_det", "error % (det)", ".2f"), ("error_mc", "error % (MC)", ".2f"),
             ("nll_det", "NLL (det)", ".4f"), ("nll_mc", "NLL (MC)", ".4f"),
             ("ece_det", "ECE (det)", ".4f"), ("ece_mc", "ECE (MC)", ".4f"),
             ("seconds", "train s", ".0f"))
  shown = [r | {"rates": ", ".join(f"{p:.3f}" for p in r["rates"]),
                "error_det": 100 * r["error_det"], "error_mc": 100 * r["error_mc"]} for r in rows]
  text = (f"Concrete dropout on an MLP {tuple(config.hidden)} ({config.dataset}, "
          f"{config.epochs} epochs, MC with {config.mc_samples} samples): learned rates "
          f"(init {config.init_rate}) against Srivastava et al.'s fixed 0.2 / 0.5.\n\n"
          + reporting.markdown_table(shown, columns))
  out = {"rows": rows, "summary": {r["model"]: r["error_det"] for r in rows}}
  return study.Report(summary=out, markdown=text,
                      rows=[{k: v for k, v in r.items() if k != "rate_history"} for r in rows],
                      figures={"learned_rates.png": _plot(rows[0]["rate_history"])})


def _plot(history):
  plt = reporting.pyplot()
  fig, ax = plt.subplots(figsize=(6, 4))
  history = np.asarray(history)
  for i in range(history.shape[1]):
    ax.plot(np.arange(len(history)), history[:, i],
            label="input" if i == 0 else f"hidden layer {i}")
  ax.set_xlabel("epoch")
  ax.set_ylabel("learned dropout rate p")
  ax.set_title("Concrete dropout on an MLP: rates during training")
  ax.legend()
  return fig


STUDY = study.Study("concrete_mnist", train_and_evaluate)
