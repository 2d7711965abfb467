"""The MC-dropout regression network of Gal & Ghahramani (2016), as pure vmappable functions.

One hidden ReLU layer, dropout with the same rate on the input and on the hidden layer,
Keras's Glorot-uniform kernels and zero biases, an L2 penalty on the kernels, MSE on the
standardised target, Adam. The rate and the L2 coefficient are arguments, so they can be
traced: every split and grid point of a dataset trains as one vmapped program.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dropjax import train
from dropjax.concrete import concrete_dropout, concrete_dropout_regularizer
from dropjax.metrics import interval_coverage
from dropjax.ops import dropout
from dropjax.penalties import l2_decay
from dropjax.train import TrainState, init_train_state

Params = dict[str, jax.Array]


def init_regressor(key: jax.Array, in_features: int, hidden: int) -> Params:
  """Glorot-uniform kernels (Keras's default) and zero biases."""
  k1, k2 = jax.random.split(key)

  def glorot(k, fan_in, fan_out):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(k, (fan_in, fan_out), jnp.float32, -limit, limit)

  return {"w1": glorot(k1, in_features, hidden), "b1": jnp.zeros(hidden),
          "w2": glorot(k2, hidden, 1), "b2": jnp.zeros(1)}


def regressor_forward(params: Params, key: jax.Array | None, x: jax.Array, rate: Any, *,
                      deterministic: bool = False) -> jax.Array:
  """``dropout(x) -> dense -> relu -> dropout -> dense``; returns ``(batch,)``."""
  k_in, k_hidden = jax.random.split(key) if key is not None else (None, None)
  h = dropout(k_in, x, rate, deterministic=deterministic)
  h = jax.nn.relu(h @ params["w1"] + params["b1"])
  h = dropout(k_hidden, h, rate, deterministic=deterministic)
  return (h @ params["w2"] + params["b2"])[..., 0]


def l2_coefficient(rate: Any, tau: Any, n_train: int, length_scale: float = 1e-2) -> Any:
  """The reference code's weight decay ``l**2 (1 - p) / (2 N tau)``."""
  return length_scale**2 * (1.0 - rate) / (2.0 * n_train * tau)


def make_optimizer(learning_rate: float, eps: float = 1e-8) -> optax.GradientTransformation:
  """Adam with Keras 1's defaults (the reference code's optimizer)."""
  return optax.adam(learning_rate, b1=0.9, b2=0.999, eps=eps)


def with_l2(tx: optax.GradientTransformation, l2: Any) -> optax.GradientTransformation:
  """``tx`` after the reference code's L2 penalty ``l2 * (|w1|^2 + |w2|^2)`` (biases free).

  The penalty is a gradient transform (`dropjax.penalties.l2_decay`), so ``l2`` may be
  traced: every grid point of a dataset trains in one vmapped program.
  """
  return optax.chain(l2_decay(l2, mask=lambda params: {k: k.startswith("w") for k in params}),
                     tx)


def init_state(key: jax.Array, in_features: int, hidden: int,
               tx: optax.GradientTransformation) -> TrainState:
  """A fresh regressor's `dropjax.train.TrainState` for `train_epochs` (``tx`` with L2)."""
  return init_train_state(init_regressor(key, in_features, hidden), with_l2(tx, 0.0))


LossFn = Any  # (params, key, x_batch, y_batch, weight) -> scalar


def mse_loss(rate: Any) -> LossFn:
  """The reference code's data term: weighted MSE on the standardised target (its L2 is in
  the optimizer, `with_l2`)."""

  def loss_fn(params, key, xb, yb, weight):
    pred = regressor_forward(params, key, xb, rate)
    return jnp.sum(weight * (pred - yb) ** 2) / jnp.sum(weight)

  return loss_fn


def train_epochs(
    state: TrainState,
    keys: tuple[jax.Array, jax.Array],
    x: jax.Array,
    y: jax.Array,
    rate: Any,
    l2: Any,
    first_epoch: Any,
    *,
    num_epochs: int,
    batch_size: int,
    tx: optax.GradientTransformation,
    unroll: int = 1,
) -> tuple[TrainState, jax.Array]:
  """`train_epochs_with_loss` with `mse_loss` and the L2 penalty (rate and L2 traceable)."""
  return train_epochs_with_loss(state, keys, x, y, mse_loss(rate), first_epoch,
                                num_epochs=num_epochs, batch_size=batch_size,
                                tx=with_l2(tx, l2), unroll=unroll)


def train_epochs_with_loss(
    state: TrainState,
    keys: tuple[jax.Array, jax.Array],
    x: jax.Array,
    y: jax.Array,
    loss_fn: LossFn,
    first_epoch: Any,
    *,
    num_epochs: int,
    batch_size: int,
    tx: optax.GradientTransformation,
    unroll: int = 1,
) -> tuple[TrainState, jax.Array]:
  """Runs ``num_epochs`` epochs from ``first_epoch`` (one model; vmap it for many).

  `dropjax.train.train_epochs` with the reference code's batching: like Keras, every
  epoch ends with the partial batch (padded and masked, so shapes stay static). Epoch e
  shuffles with ``fold_in(shuffle_key, e)`` and step t draws its masks from
  ``fold_in(dropout_key, t)``: training split into segments (for checkpoints) equals one
  run.

  Args:
    state: parameters and optimizer state (`dropjax.train.TrainState`).
    keys: ``(shuffle_key, dropout_key)``.
    x, y: the training set (standardised).
    loss_fn: ``(params, key, x_batch, y_batch, weight) -> scalar``; ``weight`` is 0 on the
      padding of the last batch.
    first_epoch: the epoch to start from (traced; resuming passes the checkpoint's).
    num_epochs, batch_size, tx, unroll: static settings.

  Returns:
    The new state and the per-epoch mean training loss.
  """
  def train_loss(params, rest, batch, weight, key):
    return loss_fn(params, key, *batch, weight), rest

  return train.train_epochs(state, (x, y), keys=keys, first_epoch=first_epoch,
                            num_epochs=num_epochs, batch_size=batch_size, loss_fn=train_loss,
                            tx=tx, drop_remainder=False, unroll=unroll)


# Central predictive-interval levels whose coverage `mc_regression_stats` reports.
COVERAGE_LEVELS = (0.5, 0.9, 0.95)


class MCRegressionStats(NamedTuple):
  mc_rmse: jax.Array
  log_likelihood: jax.Array
  weight_scaling_rmse: jax.Array
  # Fraction of test targets inside the Gaussian predictive interval at each level.
  coverage: jax.Array


def mc_regression_stats(
    params: Params,
    key: jax.Array,
    x: jax.Array,
    y: jax.Array,
    rate: Any,
    tau: Any,
    y_mean: Any,
    y_std: Any,
    *,
    num_samples: int,
    chunk_size: int,
    vectorize: bool = False,
) -> MCRegressionStats:
  """Test metrics in the target's original units from ``num_samples`` dropout passes.

  Streams over chunks of samples (sample i uses ``fold_in(key, i)``), keeping a running
  sum of predictions and a running logsumexp per point, so memory is ``chunk_size x N``
  whatever ``num_samples`` is. The log-likelihood is the reference code's mixture
  ``logsumexp_t(-tau/2 (y - yhat_t)**2) - log T - log(2 pi)/2 + log(tau)/2``, averaged.
  Interval coverage uses the moment-matched predictive ``N(mean_t yhat_t, var_t yhat_t +
  1/tau)`` (Gal & Ghahramani 2016, eq. 8-9) at `COVERAGE_LEVELS`.

  Args:
    params: a trained regressor.
    key: the MC key.
    x: standardised inputs ``(N, d)``.
    y: targets in original units ``(N,)``.
    rate: the dropout rate.
    tau: the model precision (original units).
    y_mean, y_std: the training target's statistics (to de-standardise predictions).
    num_samples: T (a multiple of ``chunk_size``).
    chunk_size: samples per step of the stream.
    vectorize: vmap a chunk's samples (the layout of the first published UCI table and of
      the Concrete UCI table) instead of mapping them one at a time (slower: a chunk's
      activations leave the cache; the same numbers to float rounding); see
      `_stream_samples`.

  Returns:
    `MCRegressionStats` with the RMSE of the MC mean, the test log-likelihood, the
    RMSE of the deterministic (weight-scaling) prediction and the interval coverage.
  """
  deterministic = regressor_forward(params, None, x, rate, deterministic=True) * y_std + y_mean

  def sample(key):
    preds = regressor_forward(params, key, x, rate) * y_std + y_mean
    return preds, -0.5 * tau * (y - preds) ** 2, jnp.zeros_like(preds)

  mc_mean, variance, log_mean_density = _stream_samples(
      sample, key, deterministic, num_samples, chunk_size, vectorize=vectorize)
  variance = variance + 1.0 / tau
  ll = log_mean_density - 0.5 * np.log(2 * np.pi) + 0.5 * jnp.log(tau)
  return _summarise(y, mc_mean, variance, ll, deterministic)


def _summarise(y, mc_mean, variance, ll, deterministic) -> MCRegressionStats:
  """The statistics from per-point MC mean, predictive variance and log-likelihood."""
  return MCRegressionStats(
      mc_rmse=jnp.sqrt(jnp.mean((y - mc_mean) ** 2)),
      log_likelihood=jnp.mean(ll),
      coverage=interval_coverage(mc_mean, jnp.sqrt(variance), y, COVERAGE_LEVELS),
      weight_scaling_rmse=jnp.sqrt(jnp.mean((y - deterministic) ** 2)),
  )


def _stream_samples(sample, key, reference, num_samples, chunk_size, *, vectorize=False):
  """Streams ``sample(fold_in(key, i))`` over chunks of samples.

  ``sample`` returns ``(prediction, log_term, noise_variance)``, each ``(N,)``. Returns the
  MC mean prediction, its variance over samples plus the mean noise variance, and
  ``logsumexp_i(log_term_i) - log T`` per point; memory is ``chunk_size x N``.
  ``vectorize=True`` vmaps each chunk's samples, the layout the committed UCI tables were
  computed with. Mapped one at a time (the default), a sample's activations stay in cache
  (vmapped, Protein's 20 x 8,232 x 100 hidden units took 66 MB) and the test pass takes
  about 0.6x the time on Protein (`scripts/bench_uci_phases.py`). The masks are the same,
  but XLA compiles an (N, H) product differently from a (20 N, H) one: when N is not a
  multiple of its vector width, each sample's last few points take another path, so the
  statistics agree to float rounding (about 1e-6 relative), not always bitwise.
  """
  if num_samples % chunk_size:
    raise ValueError(f"`num_samples`={num_samples} must be a multiple of "
                     f"`chunk_size`={chunk_size}.")
  n = reference.shape[0]

  # Sums of deviations from the deterministic prediction: sums of squared raw predictions
  # lose the variance to float32 rounding when the target's mean is large (Power: ~450).
  def chunk(carry, indices):
    total, total_sq, noise, running_max, running_sum = carry
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(indices)
    if vectorize:
      preds, terms, noise_variance = jax.vmap(sample)(keys)
    else:
      preds, terms, noise_variance = jax.lax.map(sample, keys)
    deviations = preds - reference[None]
    new_max = jnp.maximum(running_max, terms.max(0))
    running_sum = running_sum * jnp.exp(running_max - new_max) + jnp.exp(
        terms - new_max).sum(0)
    return (total + deviations.sum(0), total_sq + (deviations**2).sum(0),
            noise + noise_variance.sum(0), new_max, running_sum), None

  init = (jnp.zeros(n), jnp.zeros(n), jnp.zeros(n), jnp.full(n, -jnp.inf), jnp.zeros(n))
  indices = jnp.arange(num_samples).reshape(-1, chunk_size)
  (total, total_sq, noise, running_max, running_sum), _ = jax.lax.scan(chunk, init, indices)
  mean_deviation = total / num_samples
  variance = jnp.maximum(total_sq / num_samples - mean_deviation**2, 0.0) + noise / num_samples
  log_mean = running_max + jnp.log(running_sum) - np.log(num_samples)
  return reference + mean_deviation, variance, log_mean


# Concrete dropout on the same network (Gal, Hron & Kendall 2017): learned rates on the
# input and the hidden layer, and a heteroscedastic head (mean, log-variance) as in the
# reference notebook, so no tau has to be searched. The notebook gives each head its own
# ConcreteDropout layer (yaringal/ConcreteDropout at 0cb396d, concrete-dropout-keras.ipynb
# raw lines 271-272: one wrapper around each output Dense); ``separate_heads=False``
# shares one hidden rate and mask between the two heads instead.

# The rates of each head layout, in the order `concrete_rates` returns them.
CONCRETE_RATES = {False: ("input", "hidden"), True: ("input", "mean_head", "log_var_head")}


def init_concrete_regressor(key: jax.Array, in_features: int, hidden: int,
                            init_rate: float = 0.1, *, separate_heads: bool = False) -> Params:
  """Glorot kernels, zero biases, every rate at ``init_rate`` (logits are trained).

  Args:
    key: the initialisation key.
    in_features: input features.
    hidden: hidden units.
    init_rate: the starting dropout probability of every Concrete layer.
    separate_heads: one Concrete layer per output head (the reference notebook) instead
      of one shared by both heads.
  """
  k1, k2, k3 = jax.random.split(key, 3)
  base = init_regressor(k1, in_features, hidden)
  mean_head = init_regressor(k2, in_features, hidden)["w2"]
  log_var_head = init_regressor(k3, in_features, hidden)["w2"]
  logit = jnp.float32(np.log(init_rate) - np.log1p(-init_rate))
  return {"w1": base["w1"], "b1": base["b1"], "w_mean": mean_head, "b_mean": jnp.zeros(1),
          "w_log_var": log_var_head, "b_log_var": jnp.zeros(1),
          **{f"logit_{name}": logit for name in CONCRETE_RATES[separate_heads]}}


def has_separate_heads(params: Params) -> bool:
  """Whether ``params`` give each output head its own Concrete layer."""
  return "logit_mean_head" in params


def concrete_rates(params: Params) -> dict[str, jax.Array]:
  """The learned dropout rates by layer: ``input`` and ``hidden``, or ``input``,
  ``mean_head`` and ``log_var_head`` with separate heads."""
  return {name: jax.nn.sigmoid(params[f"logit_{name}"])
          for name in CONCRETE_RATES[has_separate_heads(params)]}


def concrete_regressor_forward(params: Params, key: jax.Array | None, x: jax.Array, *,
                               temperature: float = 0.1,
                               deterministic: bool = False) -> tuple[jax.Array, jax.Array]:
  """``concrete(x) -> dense -> relu -> concrete -> (mean, log-variance)``, each ``(batch,)``;
  with separate heads, each head has its own Concrete layer on the hidden units."""
  separate = has_separate_heads(params)
  # Two keys for the shared layout, as before separate heads existed (same masks).
  count = 3 if separate else 2
  keys = jax.random.split(key, count) if key is not None else (None,) * count
  rates = concrete_rates(params)
  drop = lambda k, h, p: concrete_dropout(k, h, p, temperature=temperature,
                                          deterministic=deterministic)
  h = jax.nn.relu(drop(keys[0], x, rates["input"]) @ params["w1"] + params["b1"])
  if separate:
    h_mean = drop(keys[1], h, rates["mean_head"])
    h_log_var = drop(keys[2], h, rates["log_var_head"])
  else:
    h_mean = h_log_var = drop(keys[1], h, rates["hidden"])
  return ((h_mean @ params["w_mean"] + params["b_mean"])[..., 0],
          (h_log_var @ params["w_log_var"] + params["b_log_var"])[..., 0])


def concrete_loss(n_train: int, length_scale: float, temperature: float = 0.1) -> LossFn:
  """Heteroscedastic NLL (up to constants) + the Concrete penalties of every layer.

  ``weight_regularizer = l**2 / N`` and ``dropout_regularizer = 2 / N``: the reference
  notebook's choice for this loss. Each Concrete layer's penalty covers the kernels it
  feeds: the first layer's, then both heads' (shared) or each head's own (separate).
  """
  wr, dr = length_scale**2 / n_train, 2.0 / n_train

  def loss_fn(params, key, xb, yb, weight):
    mean, log_var = concrete_regressor_forward(params, key, xb, temperature=temperature)
    nll = jnp.sum(weight * (jnp.exp(-log_var) * (yb - mean) ** 2 + log_var)) / jnp.sum(weight)
    rates = concrete_rates(params)
    penalty = lambda kernels, p, dim: concrete_dropout_regularizer(
        kernels, p, input_dim=dim, weight_regularizer=wr, dropout_regularizer=dr)
    hidden = params["w1"].shape[1]
    total = penalty(params["w1"], rates["input"], xb.shape[-1])
    if has_separate_heads(params):
      total += (penalty(params["w_mean"], rates["mean_head"], hidden)
                + penalty(params["w_log_var"], rates["log_var_head"], hidden))
    else:
      total += penalty((params["w_mean"], params["w_log_var"]), rates["hidden"], hidden)
    return nll + total

  return loss_fn


def mc_concrete_stats(
    params: Params,
    key: jax.Array,
    x: jax.Array,
    y: jax.Array,
    y_mean: Any,
    y_std: Any,
    *,
    temperature: float = 0.1,
    num_samples: int,
    chunk_size: int,
    vectorize: bool = False,
) -> MCRegressionStats:
  """As `mc_regression_stats` for the heteroscedastic concrete regressor.

  Sample t predicts ``N(mu_t, sigma_t**2)``; the log-likelihood is that of the mixture,
  ``logsumexp_t log N(y; mu_t, sigma_t**2) - log T``, and intervals use the moment-matched
  ``N(mean_t mu_t, var_t mu_t + mean_t sigma_t**2)``, all in original units.
  """
  def in_units(mean, log_var):
    return mean * y_std + y_mean, jnp.exp(log_var) * y_std**2

  deterministic, _ = in_units(*concrete_regressor_forward(
      params, None, x, temperature=temperature, deterministic=True))

  def sample(key):
    mean, variance = in_units(*concrete_regressor_forward(params, key, x,
                                                          temperature=temperature))
    return mean, -0.5 * (y - mean) ** 2 / variance - 0.5 * jnp.log(variance), variance

  mc_mean, variance, log_mean_density = _stream_samples(
      sample, key, deterministic, num_samples, chunk_size, vectorize=vectorize)
  ll = log_mean_density - 0.5 * np.log(2 * np.pi)
  return _summarise(y, mc_mean, variance, ll, deterministic)
