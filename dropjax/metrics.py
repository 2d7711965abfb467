"""Classification metrics; jit-able, and they accept numpy arrays.

Probabilities are ``(..., N, C)`` and labels ``(..., N)`` integers.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

ArrayLike = Any


def accuracy(probs: ArrayLike, labels: ArrayLike) -> jax.Array:
  """Fraction of examples whose arg-max class is the label."""
  probs, labels = jnp.asarray(probs), jnp.asarray(labels)
  return jnp.mean(jnp.argmax(probs, -1) == labels)


def negative_log_likelihood(probs: ArrayLike, labels: ArrayLike, eps: float = 1e-12) -> jax.Array:
  """Mean ``-log p(label)``; probabilities are floored at ``eps`` so a confident error is finite."""
  probs, labels = jnp.asarray(probs), jnp.asarray(labels)
  picked = jnp.take_along_axis(probs, labels[..., None], axis=-1)[..., 0]
  return -jnp.mean(jnp.log(jnp.maximum(picked, eps)))


def brier_score(probs: ArrayLike, labels: ArrayLike) -> jax.Array:
  """Mean over examples of ``sum_c (p_c - 1[c = label])**2`` (range [0, 2])."""
  probs, labels = jnp.asarray(probs), jnp.asarray(labels)
  onehot = jax.nn.one_hot(labels, probs.shape[-1], dtype=probs.dtype)
  return jnp.mean(jnp.sum((probs - onehot) ** 2, axis=-1))


def _bin_statistics(probs, labels, num_bins, equal_mass):
  probs, labels = jnp.asarray(probs), jnp.asarray(labels)
  confidence = jnp.max(probs, -1)
  correct = (jnp.argmax(probs, -1) == labels).astype(jnp.float32)
  if equal_mass:
    order = jnp.argsort(confidence)
    ranks = jnp.empty_like(order).at[order].set(jnp.arange(order.shape[0]))
    bins = (ranks * num_bins) // confidence.shape[0]
  else:
    # Bins (k/M, (k+1)/M]; confidence 1.0 falls in the last bin, 0 in the first.
    bins = jnp.clip(jnp.ceil(confidence * num_bins).astype(jnp.int32) - 1, 0, num_bins - 1)
  count = jnp.zeros(num_bins).at[bins].add(1.0)
  conf_sum = jnp.zeros(num_bins).at[bins].add(confidence)
  acc_sum = jnp.zeros(num_bins).at[bins].add(correct)
  safe = jnp.maximum(count, 1.0)
  return count, acc_sum / safe, conf_sum / safe


def expected_calibration_error(
    probs: ArrayLike, labels: ArrayLike, num_bins: int = 15, *, equal_mass: bool = False
) -> jax.Array:
  r"""Expected calibration error of the top-label confidence (Guo et al. 2017).

  :math:`\mathrm{ECE} = \sum_m \frac{|B_m|}{n} |\mathrm{acc}(B_m) - \mathrm{conf}(B_m)|`
  over ``num_bins`` equal-width bins ``(m/M, (m+1)/M]`` (15 by default), or equal-mass
  bins with ``equal_mass=True``. The gap is an absolute value, not a square.

  Args:
    probs: predicted probabilities ``(N, C)``.
    labels: integer labels ``(N,)``.
    num_bins: the number of bins M.
    equal_mass: bins holding equal numbers of examples instead of equal widths.

  Returns:
    A scalar in [0, 1].

  Example:
    >>> import jax.numpy as jnp
    >>> from dropjax.metrics import expected_calibration_error
    >>> float(expected_calibration_error(jnp.array([[0.2, 0.8]] * 5), jnp.array([1, 1, 1, 1, 0])))
    0.0

  References:
    Guo, Pleiss, Sun, Weinberger. "On calibration of modern neural networks." ICML 2017.
  """
  count, acc, conf = _bin_statistics(probs, labels, num_bins, equal_mass)
  return jnp.sum(count * jnp.abs(acc - conf)) / jnp.sum(count)


def maximum_calibration_error(
    probs: ArrayLike, labels: ArrayLike, num_bins: int = 15, *, equal_mass: bool = False
) -> jax.Array:
  """The largest ``|acc - conf|`` over non-empty bins (Guo et al. 2017)."""
  count, acc, conf = _bin_statistics(probs, labels, num_bins, equal_mass)
  return jnp.max(jnp.where(count > 0, jnp.abs(acc - conf), 0.0))


def reliability_diagram_data(
    probs: ArrayLike, labels: ArrayLike, num_bins: int = 15
) -> dict[str, jax.Array]:
  """Per equal-width bin: ``count``, ``accuracy``, ``confidence`` (0 for empty bins)."""
  count, acc, conf = _bin_statistics(probs, labels, num_bins, False)
  return {"count": count, "accuracy": acc, "confidence": conf}
