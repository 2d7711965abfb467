"""Concrete dropout's synthetic experiment: learned dropout rates as the data grows."""

from __future__ import annotations

import functools
import itertools
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from dropjax import layers, prng
from dropjax.mc import mc_sample, module_forward
from dropjax.penalties import check_coefficient, collect_penalties
from dropjax.train import init_train_state, train_epochs
from experiments import config_checks, reporting, study


class HeteroscedasticConcreteMLP(nnx.Module):
  """``[concrete dropout -> dense]`` x 3 (ReLU), then concrete-dropout mean and log-var heads.

  ``penalty()`` is the Concrete-dropout penalty of the five layers with the coefficients
  given here (the `dropjax.penalties` protocol).
  """

  def __init__(self, hidden: int, *, init_rate: float, temperature: float,
               weight_regularizer: float = 0.0, dropout_regularizer: float = 0.0,
               rngs: nnx.Rngs):
    sizes = [1, hidden, hidden, hidden]
    # Keras's Dense default (the reference code): for the 1 -> 1024 first layer LeCun-normal
    # weights are ~500x larger in variance, and the log-variance head then diverges.
    dense = functools.partial(nnx.Linear, kernel_init=nnx.initializers.glorot_uniform(),
                              rngs=rngs)
    self.drops = nnx.List([layers.ConcreteDropout(init_rate=init_rate, temperature=temperature,
                                                  rngs=rngs) for _ in range(5)])
    self.denses = nnx.List([dense(a, b) for a, b in itertools.pairwise(sizes)])
    self.mean = dense(hidden, 1)
    self.log_var = dense(hidden, 1)
    self.input_dims = (1, hidden, hidden, hidden, hidden)
    self.weight_regularizer = check_coefficient(weight_regularizer, "weight_regularizer")
    self.dropout_regularizer = check_coefficient(dropout_regularizer, "dropout_regularizer")

  def __call__(self, x):
    for drop, dense in zip(self.drops[:3], self.denses, strict=True):
      x = jax.nn.relu(dense(drop(x)))
    return jnp.concatenate([self.mean(self.drops[3](x)), self.log_var(self.drops[4](x))], -1)

  def penalty(self) -> jax.Array:
    weights = [*self.denses, self.mean, self.log_var]
    return sum(drop.regularizer(w.kernel[...], input_dim=k,
                                weight_regularizer=self.weight_regularizer,
                                dropout_regularizer=self.dropout_regularizer)
               for drop, w, k in zip(self.drops, weights, self.input_dims, strict=True))

  def rates(self) -> list[float]:
    return [float(d.rate) for d in self.drops]


def synthetic(key, n):
  kx, ke = jax.random.split(key)
  x = jax.random.normal(kx, (n, 1))
  return x, 2.0 * x + 8.0 + jax.random.normal(ke, (n, 1))


def heteroscedastic_loss(out, y, weight):
  mean, log_var = out[:, :1], out[:, 1:]
  per_point = jnp.sum(jnp.exp(-log_var) * (y - mean) ** 2 + log_var, -1)
  return jnp.sum(weight * per_point) / jnp.sum(weight)


def fit(config, n, epochs, key, curve_name: str = "") -> dict[str, Any]:
  data_key, init_key, shuffle_key, dropout_key, val_key, mc_key = jax.random.split(key, 6)
  x, y = synthetic(data_key, n)
  model = HeteroscedasticConcreteMLP(config.hidden, init_rate=config.init_rate,
                                     temperature=config.temperature,
                                     weight_regularizer=config.length_scale**2 / n,
                                     dropout_regularizer=2.0 / n,
                                     rngs=nnx.Rngs(params=init_key, dropout=0))
  tx = optax.adam(config.learning_rate)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def loss_fn(params, rest, batch, weight, step_key):
    m = nnx.merge(graphdef, params, rest, copy=True)
    layers.reseed(m, step_key)
    xb, yb = batch
    return heteroscedastic_loss(m(xb), yb, weight) + collect_penalties(m), rest

  # Like Keras, every epoch ends with the partial batch (padded and masked).
  run = jax.jit(lambda state: train_epochs(
      state, (x, y), keys=(shuffle_key, dropout_key), first_epoch=0, num_epochs=epochs,
      batch_size=min(config.batch_size, n), loss_fn=loss_fn, tx=tx))
  tic = time.perf_counter()
  state, losses = run(init_train_state(params, tx, rest))
  params = jax.block_until_ready(state.params)
  seconds = time.perf_counter() - tic
  study.write_curves({"loss": losses}, name=curve_name)
  model = nnx.merge(graphdef, params, rest)
  x_val, y_val = synthetic(val_key, config.validation_size)
  # All samples at once, as when the committed results were made (the chunk changes the
  # outputs' last bits only).
  out = mc_sample(module_forward(model), mc_key, x_val, config.mc_samples,
                  chunk_size=config.mc_samples)
  means, log_vars = out[..., 0], out[..., 1]
  mc_mean = means.mean(0)
  return {"rates": model.rates(), "rmse": float(jnp.sqrt(jnp.mean((mc_mean - y_val[:, 0]) ** 2))),
          "epistemic_std": float(jnp.sqrt(means.var(0)).mean()),
          "aleatoric_std": float(jnp.sqrt(jnp.exp(log_vars).mean(0)).mean()),
          "train_seconds": seconds}


def _plot(rows):
  plt = reporting.pyplot()
  sizes = [r["n"] for r in rows]
  fig, ax = plt.subplots(figsize=(6, 4))
  for i, name in enumerate(["layer 1 (input)", "layer 2", "layer 3", "mean head"]):
    ax.errorbar(sizes, [r["rates_mean"][i] for r in rows], [r["rates_std"][i] for r in rows],
                marker="o", label=f"ours, {name}")
    ax.plot(sizes, [r["published"][i] for r in rows], "k:", alpha=0.5)
  ax.set_xscale("log")
  ax.set_xlabel("N (training points)")
  ax.set_ylabel("learned dropout rate p")
  ax.set_title("Concrete dropout: learned p vs data size (dotted: published)")
  ax.legend(fontsize=8)
  return fig


def check_config(config: ml_collections.ConfigDict) -> None:
  """The study's rules beyond `config_checks.check_fields`, checked before any work.

  Args:
    config: a ``concrete_dropout`` config.

  Raises:
    config_checks.ConfigError: naming the field and the allowed values.
  """
  if len(config.sizes) != len(config.epochs):
    raise config_checks.ConfigError(
        f"config.epochs = {config.epochs} must give one epoch count per entry of "
        f"config.sizes = {config.sizes}.")
  config_checks.check_initial_rate(config)
  if config.validation_size < 1:
    raise config_checks.ConfigError(
        f"config.validation_size = {config.validation_size}: the test set needs at least one "
        "point (a positive integer).")


def train_and_evaluate(config: ml_collections.ConfigDict, sections: study.Sections
                       ) -> study.Report:
  start = time.perf_counter()
  rows = []
  root = prng.key(config.seed, config.prng_impl)
  for n, epochs in zip(config.sizes, config.epochs, strict=True):
    runs = sections(f"sizes/{n}", lambda n=n, epochs=epochs: [
        fit(config, n, epochs, jax.random.fold_in(jax.random.fold_in(root, n), r),
            curve_name=f"repeat{r}")
        for r in range(config.repeats)])
    rates = np.asarray([r["rates"][:4] for r in runs])
    rows.append({
        "n": n, "epochs": epochs, "rates_mean": rates.mean(0).tolist(),
        "rates_std": rates.std(0).tolist(),
        "published": list(config.published_rates.get(str(n), (np.nan,) * 4)),
        "rmse": float(np.mean([r["rmse"] for r in runs])),
        "epistemic_std": float(np.mean([r["epistemic_std"] for r in runs])),
        "aleatoric_std": float(np.mean([r["aleatoric_std"] for r in runs])),
        "train_seconds": float(np.sum([r["train_seconds"] for r in runs])),
    })
  fmt = lambda r, i: f"{r['rates_mean'][i]:.3f} ± {r['rates_std'][i]:.3f} ({r['published'][i]:.3f})"
  lines = [
      f"Concrete dropout, synthetic y = 2x + 8 + N(0,1): learned p per layer, ours (mean ± std "
      f"over {config.repeats} repeats) with the reference notebook's value in brackets "
      "(Gal, Hron & Kendall 2017, §4.1; yaringal/ConcreteDropout). Hidden width "
      f"{config.hidden}; {time.perf_counter() - start:.0f}s for this invocation.", "",
      "| N | epochs | p layer 1 (input) | p layer 2 | p layer 3 | p mean head | test RMSE | "
      "epistemic std | aleatoric std | train time |", "|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['n']} | {r['epochs']} | {fmt(r, 0)} | {fmt(r, 1)} | {fmt(r, 2)} | "
                 f"{fmt(r, 3)} | {r['rmse']:.2f} | {r['epistemic_std']:.2f} | "
                 f"{r['aleatoric_std']:.2f} | {r['train_seconds']:.0f}s |")
  return study.Report(summary={"rows": rows}, markdown="\n".join(lines) + "\n", rows=rows,
                      figures={"learned_rates.png": _plot(rows)})


STUDY = study.Study("concrete_dropout", train_and_evaluate)
