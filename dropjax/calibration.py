"""Temperature scaling: the post-hoc calibration baseline MC dropout is compared against."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

ArrayLike = Any
_GOLDEN = 0.6180339887498949


def temperature_nll(logits: ArrayLike, labels: ArrayLike, temperature: ArrayLike) -> jax.Array:
  """Mean NLL of ``softmax(logits / temperature)``."""
  logits = jnp.asarray(logits, jnp.float32)
  return optax.softmax_cross_entropy_with_integer_labels(
      logits / temperature, jnp.asarray(labels)).mean()


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
    logits: held-out logits ``(N, C)`` (never the test set).
    labels: ``(N,)``.
    max_inverse_temperature: the upper end of the search for 1/T.
    iterations: golden-section steps.

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
  logits, labels = jnp.asarray(logits, jnp.float32), jnp.asarray(labels)
  objective = lambda beta: temperature_nll(logits, labels, 1.0 / beta)

  def step(_, bracket):
    lo, hi = bracket
    a = hi - _GOLDEN * (hi - lo)
    b = lo + _GOLDEN * (hi - lo)
    left_better = objective(a) < objective(b)
    return jnp.where(left_better, lo, a), jnp.where(left_better, b, hi)

  lo, hi = jax.lax.fori_loop(0, iterations, step,
                             (jnp.float32(1e-4), jnp.float32(max_inverse_temperature)))
  return 2.0 / (lo + hi)
