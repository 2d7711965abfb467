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


def rms_calibration_error(
    probs: ArrayLike, labels: ArrayLike, num_bins: int = 15, *, equal_mass: bool = False
) -> jax.Array:
  """Root-mean-square calibration error: ``sqrt(sum_m |B_m|/n (acc - conf)**2)``."""
  count, acc, conf = _bin_statistics(probs, labels, num_bins, equal_mass)
  return jnp.sqrt(jnp.sum(count * (acc - conf) ** 2) / jnp.sum(count))


def classwise_expected_calibration_error(
    probs: ArrayLike, labels: ArrayLike, num_bins: int = 15
) -> jax.Array:
  """Class-wise ECE: the equal-width-bin ECE of every class's probability, averaged.

  For class c the "confidence" is ``p_c`` of every example and the "accuracy" the
  frequency of label c in the bin.

  References:
    Kull et al. "Beyond temperature scaling." NeurIPS 2019; Nixon et al. "Measuring
    calibration in deep learning." CVPR workshops 2019.
  """
  probs, labels = jnp.asarray(probs), jnp.asarray(labels)
  num_classes = probs.shape[-1]
  onehot = jax.nn.one_hot(labels, num_classes)

  def one_class(p, hit):
    bins = jnp.clip(jnp.ceil(p * num_bins).astype(jnp.int32) - 1, 0, num_bins - 1)
    gap = jnp.zeros(num_bins).at[bins].add(hit) - jnp.zeros(num_bins).at[bins].add(p)
    return jnp.sum(jnp.abs(gap)) / p.shape[0]  # sum_m |B_m|/n |freq - conf|

  return jnp.mean(jax.vmap(one_class, in_axes=(1, 1))(probs, onehot))


def _threshold_counts(scores, positives):
  """For each example's score as threshold: positives and examples with score >= it."""
  scores = jnp.asarray(scores, jnp.float32)
  positives = jnp.asarray(positives).astype(jnp.float32)
  order = jnp.argsort(scores)
  sorted_scores = scores[order]
  below_pos = jnp.concatenate([jnp.zeros(1), jnp.cumsum(positives[order])])
  first = jnp.searchsorted(sorted_scores, scores, side="left")
  n_at_or_above = scores.shape[0] - first
  pos_at_or_above = jnp.sum(positives) - below_pos[first]
  return scores, positives, n_at_or_above, pos_at_or_above


def auroc(scores: ArrayLike, positives: ArrayLike) -> jax.Array:
  """Area under the ROC curve of ``scores`` (higher = more likely positive), ties averaged.

  Computed as the Mann-Whitney U statistic with average ranks; e.g. score = predictive
  entropy, positive = out-of-distribution or misclassified.
  """
  scores = jnp.asarray(scores, jnp.float32)
  positives = jnp.asarray(positives).astype(bool)
  sorted_scores = jnp.sort(scores)
  left = jnp.searchsorted(sorted_scores, scores, side="left")
  right = jnp.searchsorted(sorted_scores, scores, side="right")
  ranks = (left + right + 1) / 2.0  # 1-based average ranks
  n_pos = jnp.sum(positives)
  n_neg = scores.shape[0] - n_pos
  u = jnp.sum(jnp.where(positives, ranks, 0.0)) - n_pos * (n_pos + 1) / 2.0
  return u / (n_pos * n_neg)


def average_precision(scores: ArrayLike, positives: ArrayLike) -> jax.Array:
  """Area under the precision-recall curve as average precision (tied scores share a threshold)."""
  _, pos, n_ge, pos_ge = _threshold_counts(scores, positives)
  precision = pos_ge / n_ge
  return jnp.sum(pos * precision) / jnp.sum(pos)


def fpr_at_tpr(scores: ArrayLike, positives: ArrayLike, tpr: float = 0.95) -> jax.Array:
  """False-positive rate at the highest threshold whose true-positive rate is >= ``tpr``."""
  _, pos, n_ge, pos_ge = _threshold_counts(scores, positives)
  n_pos = jnp.sum(pos)
  n_neg = pos.shape[0] - n_pos
  fpr = (n_ge - pos_ge) / n_neg
  reaches = pos_ge / n_pos >= tpr
  return jnp.min(jnp.where(reaches, fpr, 1.0))


def accuracy_rejection_curve(
    probs: ArrayLike, labels: ArrayLike, uncertainty: ArrayLike | None = None,
    num_points: int = 21
) -> tuple[jax.Array, jax.Array]:
  """Accuracy on the retained examples after rejecting the most uncertain fraction.

  Args:
    probs: ``(N, C)``.
    labels: ``(N,)``.
    uncertainty: per-example score (higher = rejected first); default ``1 - max p``.
    num_points: rejection fractions ``linspace(0, 1, num_points)`` (the last keeps 1 example).

  Returns:
    ``(rejected_fraction, accuracy)``, each of length ``num_points``.
  """
  probs, labels = jnp.asarray(probs), jnp.asarray(labels)
  if uncertainty is None:
    uncertainty = 1.0 - jnp.max(probs, -1)
  n = labels.shape[0]
  order = jnp.argsort(jnp.asarray(uncertainty), stable=True)
  correct = (jnp.argmax(probs, -1) == labels)[order].astype(jnp.float32)
  cumulative = jnp.cumsum(correct)
  fractions = jnp.linspace(0.0, 1.0, num_points)
  kept = jnp.clip(jnp.round((1.0 - fractions) * n).astype(jnp.int32), 1, n)
  return fractions, cumulative[kept - 1] / kept


def interval_coverage(
    mean: ArrayLike, std: ArrayLike, targets: ArrayLike,
    levels: ArrayLike = (0.5, 0.68, 0.8, 0.9, 0.95, 0.99),
) -> jax.Array:
  """Fraction of targets inside Gaussian central intervals ``mean +- z std`` at each level.

  A calibrated regressor has coverage equal to the level.
  """
  mean, std, targets = (jnp.asarray(a, jnp.float32) for a in (mean, std, targets))
  z = jax.scipy.special.ndtri(0.5 + jnp.asarray(levels, jnp.float32) / 2.0)
  inside = jnp.abs(targets - mean)[None] <= z[:, None] * std[None]
  return jnp.mean(inside, axis=1)


def plot_reliability_diagram(probs: ArrayLike, labels: ArrayLike, num_bins: int = 15, ax=None,
                             label: str | None = None):
  """Draws accuracy against confidence per bin (matplotlib); returns the axes."""
  import matplotlib.pyplot as plt

  data = reliability_diagram_data(probs, labels, num_bins)
  if ax is None:
    _, ax = plt.subplots(figsize=(4, 4))
  centers = (jnp.arange(num_bins) + 0.5) / num_bins
  filled = data["count"] > 0
  ax.plot([0, 1], [0, 1], "k--", lw=1)
  ax.bar(centers[filled], data["accuracy"][filled], width=1.0 / num_bins, alpha=0.6,
         edgecolor="k", label=label)
  ax.set_xlabel("confidence")
  ax.set_ylabel("accuracy")
  ece = expected_calibration_error(probs, labels, num_bins)
  ax.set_title(f"ECE {float(ece):.4f}")
  return ax


def summary(probs: ArrayLike, labels: ArrayLike, num_bins: int = 15) -> dict[str, float]:
  """Accuracy, NLL, Brier score and ECE as Python floats (one row of a results table)."""
  return {
      "accuracy": float(accuracy(probs, labels)),
      "nll": float(negative_log_likelihood(probs, labels)),
      "brier": float(brier_score(probs, labels)),
      "ece": float(expected_calibration_error(probs, labels, num_bins)),
  }
