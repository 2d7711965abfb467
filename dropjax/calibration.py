"""Temperature scaling: the post-hoc calibration baseline MC dropout is compared against."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dropjax.metrics import (
    _array,
    _check_count,
    _check_finite,
    _check_labels,
    _check_positive,
    _check_shape,
    _host,
)

ArrayLike = Any
_GOLDEN = 0.6180339887498949
_LOWEST_INVERSE_TEMPERATURE = 1e-4


def _check_logits(logits: ArrayLike, labels: ArrayLike) -> None:
  logits = _array(logits, "logits")
  _check_shape(logits, "logits", "(N, C) (examples, classes)", ndim=2)
  host = _check_finite(logits, "logits")
  _check_labels(labels, logits, probs_name="logits")
  if host is not None and logits.shape[-1] > 1:
    # Real logits essentially never form probability rows; probabilities scaled as
    # logits give a wrong temperature without any other sign.
    if np.all(host >= 0) and np.all(np.abs(host.sum(-1, dtype=np.float64) - 1.0) <= 1e-3):
      raise ValueError(
          "`logits` look like probabilities (every row is >= 0 and sums to 1): temperature "
          "scaling divides logits, the values before softmax; pass those, or jnp.log(probs).")


def _temperature_nll(logits, labels, temperature):
  logits = jnp.asarray(logits, jnp.float32)
  return optax.softmax_cross_entropy_with_integer_labels(
      logits / temperature, jnp.asarray(labels)).mean()


def temperature_nll(logits: ArrayLike, labels: ArrayLike, temperature: ArrayLike) -> jax.Array:
  """Mean NLL of ``softmax(logits / temperature)``.

  Args:
    logits: ``(N, C)`` logits (before softmax).
    labels: ``(N,)`` integer labels in ``[0, C)``.
    temperature: T > 0.

  Returns:
    A scalar (nats per example).
  """
  _check_logits(logits, labels)
  _check_positive(temperature, "temperature")
  return _temperature_nll(logits, labels, temperature)


def fit_temperature(
    logits: ArrayLike, labels: ArrayLike, *, max_inverse_temperature: float = 100.0,
    iterations: int = 100,
) -> jax.Array:
  """The temperature T > 0 minimising held-out NLL of ``softmax(logits / T)``.

  The NLL is convex in the inverse temperature ``beta = 1/T`` (it is a log-sum-exp of
  functions linear in beta minus a linear term), so a golden-section search over
  ``beta in (0, max_inverse_temperature]`` finds the global minimum; 100 iterations narrow
  the bracket by a factor of about 1e-21.

  Args:
    logits: held-out logits ``(N, C)`` (never the test set; not probabilities).
    labels: ``(N,)`` integer labels in ``[0, C)``.
    max_inverse_temperature: the upper end of the search for 1/T (> 1e-4, the lower end).
    iterations: golden-section steps (a positive int).

  Returns:
    The fitted temperature (scalar).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from dropjax.calibration import fit_temperature
    >>> logits = jax.random.normal(jax.random.key(0), (500, 3))
    >>> labels = jax.random.categorical(jax.random.key(1), logits)
    >>> bool(jnp.abs(fit_temperature(3 * logits, labels) - 3) < 0.6)
    True

  References:
    Guo, Pleiss, Sun, Weinberger. "On calibration of modern neural networks." ICML 2017.
  """
  _check_logits(logits, labels)
  _check_count(iterations, "iterations")
  _check_positive(max_inverse_temperature, "max_inverse_temperature")
  bound = _host(_array(max_inverse_temperature, "max_inverse_temperature"))
  if bound is not None and not bound > _LOWEST_INVERSE_TEMPERATURE:
    raise ValueError(
        f"`max_inverse_temperature` must be > {_LOWEST_INVERSE_TEMPERATURE:g} (the lower end "
        f"of the search for 1/T); got {bound}.")
  logits, labels = jnp.asarray(logits, jnp.float32), jnp.asarray(labels)
  objective = lambda beta: _temperature_nll(logits, labels, 1.0 / beta)

  def step(_, bracket):
    lo, hi = bracket
    a = hi - _GOLDEN * (hi - lo)
    b = lo + _GOLDEN * (hi - lo)
    left_better = objective(a) < objective(b)
    return jnp.where(left_better, lo, a), jnp.where(left_better, b, hi)

  lo, hi = jax.lax.fori_loop(0, iterations, step,
                             (jnp.float32(_LOWEST_INVERSE_TEMPERATURE),
                              jnp.float32(max_inverse_temperature)))
  return 2.0 / (lo + hi)
