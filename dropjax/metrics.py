"""Classification metrics; jit-able, and they accept numpy arrays.

Probabilities are ``(..., N, C)`` (rows on the simplex, not logits) and labels ``(..., N)``
integers in ``[0, C)``; the binned calibration metrics take exactly ``(N, C)`` and ``(N,)``.
The detection metrics (`auroc`, `average_precision`, `fpr_at_tpr`) take keyword arguments
only, ``scores=`` and ``positives=``: scikit-learn's ``roc_auc_score(y_true, y_score)`` has
the other order, and a silent swap gives a plausible wrong number.

Arguments are checked: shapes and dtypes always (they are static under `jax.jit`), values
(ranges, the simplex, NaN) whenever they are concrete. Traced values cannot be inspected
in Python and pass through unchecked. See ``docs/metrics.md``; the streaming versions live
in `dropjax.streaming`.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dropjax._extras import require

ArrayLike = Any

# Probability rows must sum to 1 within this much (float32 softmax rows sum to 1 within
# ~1e-6; 16-bit ones within ~4e-3). Logits essentially never land this close.
_SIMPLEX_TOLERANCE = 1e-3
_SIMPLEX_TOLERANCE_16BIT = 1e-2


# ---------------------------------------------------------------------------------------
# Argument checks, shared by `uncertainty`, `acquisition`, `calibration` and `streaming`.
# Shapes and dtypes are checked always; values only when concrete (never under jit/vmap).


def _array(value: Any, name: str) -> Any:
  """`value` as something with ``.shape`` and ``.dtype``; TypeError unless real numbers."""
  if not isinstance(value, (jax.Array, np.ndarray, jax.core.Tracer)):
    try:
      value = np.asarray(value)
    except (TypeError, ValueError) as error:
      raise TypeError(
          f"`{name}` must be an array of numbers; got {type(value).__name__}.") from error
  dtype = value.dtype
  if not (dtype == np.bool_ or jnp.issubdtype(dtype, jnp.integer)
          or jnp.issubdtype(dtype, jnp.floating)):
    raise TypeError(f"`{name}` must be an array of real numbers; got dtype {dtype}.")
  return value


def _host(value: Any) -> np.ndarray | None:
  """The values of `value` on the host, or None when traced (unknown until run time)."""
  if isinstance(value, jax.core.Tracer):
    return None
  return np.asarray(value)


def _where(mask: np.ndarray) -> tuple[int, ...]:
  """The index of the first True entry of `mask` (for messages)."""
  return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), mask.shape))


def _check_shape(value: Any, name: str, layout: str, ndim: int | None = None,
                 min_ndim: int = 0) -> None:
  shape = tuple(value.shape)
  if (ndim is not None and len(shape) != ndim) or len(shape) < min_ndim:
    raise ValueError(f"`{name}` must have shape {layout}; got shape {shape}.")
  if 0 in shape:
    raise ValueError(f"`{name}` must have shape {layout} with no empty axis; got shape {shape}.")


def _check_finite(value: Any, name: str) -> np.ndarray | None:
  """Refuses NaN and inf in a concrete `value`; returns its host values (None if traced)."""
  host = _host(value)
  if host is None or host.dtype == np.bool_ or np.issubdtype(host.dtype, np.integer):
    return host
  finite = np.isfinite(host)
  if not finite.all():
    at = _where(~finite)
    raise ValueError(
        f"`{name}` must be finite; got {host[at]} at index {at}.")
  return host


def _check_probs(probs: ArrayLike, name: str = "probs", *, ndim: int | None = None,
                 layout: str = "(..., N, C)") -> Any:
  """Checks that `probs` holds probability rows (last axis) on the simplex; returns it."""
  probs = _array(probs, name)
  _check_shape(probs, name, layout, ndim=ndim, min_ndim=1)
  host = _check_finite(probs, name)
  if host is None:
    return probs
  tolerance = (_SIMPLEX_TOLERANCE_16BIT if jnp.issubdtype(probs.dtype, jnp.floating)
               and np.dtype(probs.dtype).itemsize <= 2 else _SIMPLEX_TOLERANCE)
  # Summed in float64 without a float64 copy (MC samples can be large).
  sums, smallest = host.sum(-1, dtype=np.float64), host.min(-1).astype(np.float64)
  bad = (np.abs(sums - 1.0) > tolerance) | (smallest < -tolerance)
  if bad.any():
    at = _where(bad)
    raise ValueError(
        f"`{name}` must be probabilities: entries >= 0 and every row (last axis) summing to 1 "
        f"within {tolerance:g}; got row {at} summing to {sums[at]:.6g} with smallest entry "
        f"{smallest[at]:.6g}. Did you pass logits? Apply jax.nn.softmax(logits) first.")
  return probs


def _check_labels(labels: ArrayLike, probs: Any, name: str = "labels",
                  probs_name: str = "probs") -> Any:
  """Checks integer class indices shaped ``probs.shape[:-1]`` in ``[0, C)``; returns them."""
  labels = _array(labels, name)
  num_classes = probs.shape[-1]
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(
        f"`{name}` must be integer class indices in [0, {num_classes}); got dtype "
        f"{labels.dtype}. Cast whole-number labels with .astype(int); take argmax(-1) of "
        "one-hot labels.")
  expected = tuple(probs.shape[:-1])
  if tuple(labels.shape) != expected:
    hint = ""
    if tuple(labels.shape) == (*expected, 1):
      hint = " Drop the trailing axis: labels[..., 0]."
    elif tuple(labels.shape) == tuple(probs.shape):
      hint = " One-hot labels? Take labels.argmax(-1)."
    raise ValueError(
        f"`{name}` must have shape {probs_name}.shape[:-1] = {expected} (one class index per "
        f"example); got {name} shape {tuple(labels.shape)} with {probs_name} shape "
        f"{tuple(probs.shape)}.{hint}")
  host = _host(labels)
  if host is not None:
    outside = (host < 0) | (host >= num_classes)
    if outside.any():
      at = _where(outside)
      raise ValueError(
          f"`{name}` must be class indices in [0, {num_classes}) ({probs_name} has "
          f"{num_classes} classes); got {host[at]} at index {at}.")
  return labels


def _check_classification(probs: ArrayLike, labels: ArrayLike, *, binned: bool = False):
  """Checks a ``(probs, labels)`` pair; ``binned`` metrics need exactly ``(N, C)``."""
  if binned:
    probs = _check_probs(probs, ndim=2, layout="(N, C) (examples, classes)")
  else:
    probs = _check_probs(probs)
  return probs, _check_labels(labels, probs)


def _check_count(value: Any, name: str, minimum: int = 1) -> int:
  """A Python/numpy integer >= `minimum` (bools refused: True is not a count)."""
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
    raise TypeError(
        f"`{name}` must be an integer >= {minimum}; got {value!r} ({type(value).__name__}).")
  if value < minimum:
    raise ValueError(f"`{name}` must be an integer >= {minimum}; got {value}.")
  return int(value)


def _check_flag(value: Any, name: str) -> None:
  if not isinstance(value, (bool, np.bool_)):
    raise TypeError(f"`{name}` must be True or False; got {value!r}.")


def _check_positive(value: Any, name: str, *, upper: float | None = None, hint: str = "") -> None:
  """A concrete scalar in (0, upper] (or (0, inf)); traced values pass."""
  value = _array(value, name)
  host = _host(value)
  if host is None:
    return
  ok = np.all(np.isfinite(host) & (host > 0)) and (upper is None or np.all(host <= upper))
  if not ok:
    allowed = f"(0, {upper:g}]" if upper is not None else "(0, inf)"
    raise ValueError(f"`{name}` must be in {allowed}{hint}; got {host.tolist()}.")


def _check_detection(scores: ArrayLike, positives: ArrayLike, *,
                     both_classes: bool = True) -> None:
  """``scores`` (N,) finite numbers; ``positives`` (N,) booleans or 0/1 with both classes."""
  scores = _array(scores, "scores")
  positives = _array(positives, "positives")
  _check_shape(scores, "scores", "(N,) (one score per example)", ndim=1)
  if tuple(positives.shape) != tuple(scores.shape):
    raise ValueError(
        f"`positives` must have the same shape as `scores`, (N,); got positives shape "
        f"{tuple(positives.shape)} and scores shape {tuple(scores.shape)}.")
  _check_finite(scores, "scores")
  host = _host(positives)
  if host is None:
    return
  binary = (host == 0) | (host == 1)
  if not binary.all():
    at = _where(~binary)
    raise ValueError(
        f"`positives` must be booleans or 0/1 (True = the positive class, e.g. "
        f"out-of-distribution); got {host[at]} at index {at}. Did you swap `scores` and "
        "`positives`?")
  if both_classes:
    n_pos = int(np.count_nonzero(host))
    if n_pos in (0, host.size):
      raise ValueError(
          f"`positives` must contain both positive and negative examples (the metric is "
          f"undefined otherwise); got {n_pos} positives and {host.size - n_pos} negatives.")


def _keyword_only(fn):
  """Refuses positional arguments with a message saying which keywords to use."""

  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    if args:
      raise TypeError(
          f"{fn.__name__} takes keyword arguments only: {fn.__name__}(scores=..., "
          f"positives=...); got {len(args)} positional. (scikit-learn's "
          "roc_auc_score(y_true, y_score) has the other order; keywords make a swap "
          "impossible.)")
    return fn(**kwargs)

  return wrapper


# ---------------------------------------------------------------------------------------
# Per-example terms and bin statistics, shared with `dropjax.streaming` so a streamed metric
# is computed by the same operations as the whole-batch one.


def _correct(probs: jax.Array, labels: jax.Array) -> jax.Array:
  return jnp.argmax(probs, -1) == labels


def _picked(probs: jax.Array, labels: jax.Array) -> jax.Array:
  return jnp.take_along_axis(probs, labels[..., None], axis=-1)[..., 0]


def _squared_errors(probs: jax.Array, labels: jax.Array) -> jax.Array:
  onehot = jax.nn.one_hot(labels, probs.shape[-1], dtype=probs.dtype)
  return jnp.sum((probs - onehot) ** 2, axis=-1)


def _bin_sums(confidence: jax.Array, correct: jax.Array, num_bins: int, equal_mass: bool):
  """Per bin: example count, sum of confidences, sum of correct (all float32)."""
  if equal_mass:
    order = jnp.argsort(confidence)
    ranks = jnp.empty_like(order).at[order].set(jnp.arange(order.shape[0]))
    bins = (ranks * num_bins) // confidence.shape[0]
  else:
    # Bins (k/M, (k+1)/M]; confidence 1.0 falls in the last bin, 0 in the first.
    bins = jnp.clip(jnp.ceil(confidence * num_bins).astype(jnp.int32) - 1, 0, num_bins - 1)
  count = jnp.zeros(num_bins).at[bins].add(1.0)
  conf_sum = jnp.zeros(num_bins).at[bins].add(confidence)
  acc_sum = jnp.zeros(num_bins).at[bins].add(correct.astype(jnp.float32))
  return count, conf_sum, acc_sum


def _bin_means(count, conf_sum, acc_sum):
  safe = jnp.maximum(count, 1.0)
  return count, acc_sum / safe, conf_sum / safe


def _bin_statistics(probs, labels, num_bins, equal_mass):
  probs, labels = jnp.asarray(probs), jnp.asarray(labels)
  sums = _bin_sums(jnp.max(probs, -1), _correct(probs, labels), num_bins, equal_mass)
  return _bin_means(*sums)


def _ece(count, acc, conf):
  return jnp.sum(count * jnp.abs(acc - conf)) / jnp.sum(count)


def _mce(count, acc, conf):
  return jnp.max(jnp.where(count > 0, jnp.abs(acc - conf), 0.0))


def _check_bins(num_bins: Any, equal_mass: Any = False) -> None:
  _check_count(num_bins, "num_bins")
  _check_flag(equal_mass, "equal_mass")


# ---------------------------------------------------------------------------------------
# Metrics.


def _accuracy(probs, labels):
  probs, labels = jnp.asarray(probs), jnp.asarray(labels)
  return jnp.mean(_correct(probs, labels))


def _negative_log_likelihood(probs, labels, eps):
  probs, labels = jnp.asarray(probs), jnp.asarray(labels)
  return -jnp.mean(jnp.log(jnp.maximum(_picked(probs, labels), eps)))


def _brier_score(probs, labels):
  probs, labels = jnp.asarray(probs), jnp.asarray(labels)
  return jnp.mean(_squared_errors(probs, labels))


def accuracy(probs: ArrayLike, labels: ArrayLike) -> jax.Array:
  """Fraction of examples whose arg-max class is the label.

  Args:
    probs: predicted probabilities ``(..., N, C)`` (not logits).
    labels: integer labels ``(..., N)`` in ``[0, C)``.

  Returns:
    A scalar in [0, 1].

  Example:
    >>> import jax.numpy as jnp
    >>> from dropjax import metrics
    >>> float(metrics.accuracy(jnp.array([[0.9, 0.1], [0.3, 0.7]]), jnp.array([0, 0])))
    0.5
  """
  probs, labels = _check_classification(probs, labels)
  return _accuracy(probs, labels)


def negative_log_likelihood(probs: ArrayLike, labels: ArrayLike, eps: float = 1e-12) -> jax.Array:
  """Mean ``-log p(label)``; probabilities are floored at ``eps`` so a confident error is finite.

  Args:
    probs: predicted probabilities ``(..., N, C)`` (not logits: use
      ``optax.softmax_cross_entropy_with_integer_labels`` for those).
    labels: integer labels ``(..., N)`` in ``[0, C)``.
    eps: the floor on ``p(label)``.

  Returns:
    A scalar (nats per example).

  Example:
    >>> import jax.numpy as jnp
    >>> from dropjax import metrics
    >>> round(float(metrics.negative_log_likelihood(jnp.array([[0.5, 0.5]]), jnp.array([1]))), 4)
    0.6931
  """
  probs, labels = _check_classification(probs, labels)
  return _negative_log_likelihood(probs, labels, eps)


def brier_score(probs: ArrayLike, labels: ArrayLike) -> jax.Array:
  """Mean over examples of ``sum_c (p_c - 1[c = label])**2`` (range [0, 2]).

  Args:
    probs: predicted probabilities ``(..., N, C)``.
    labels: integer labels ``(..., N)`` in ``[0, C)``.

  Returns:
    A scalar in [0, 2].

  Example:
    >>> import jax.numpy as jnp
    >>> from dropjax import metrics
    >>> float(metrics.brier_score(jnp.array([[0.5, 0.5]]), jnp.array([1])))
    0.5
  """
  probs, labels = _check_classification(probs, labels)
  return _brier_score(probs, labels)


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
    num_bins: the number of bins M (a positive int; static under `jax.jit`).
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
  _check_bins(num_bins, equal_mass)
  probs, labels = _check_classification(probs, labels, binned=True)
  return _ece(*_bin_statistics(probs, labels, num_bins, equal_mass))


def maximum_calibration_error(
    probs: ArrayLike, labels: ArrayLike, num_bins: int = 15, *, equal_mass: bool = False
) -> jax.Array:
  """The largest ``|acc - conf|`` over non-empty bins (Guo et al. 2017).

  Args:
    probs: predicted probabilities ``(N, C)``.
    labels: integer labels ``(N,)``.
    num_bins: the number of bins (a positive int).
    equal_mass: bins holding equal numbers of examples instead of equal widths.

  Returns:
    A scalar in [0, 1].
  """
  _check_bins(num_bins, equal_mass)
  probs, labels = _check_classification(probs, labels, binned=True)
  return _mce(*_bin_statistics(probs, labels, num_bins, equal_mass))


def reliability_diagram_data(
    probs: ArrayLike, labels: ArrayLike, num_bins: int = 15
) -> dict[str, jax.Array]:
  """Per equal-width bin: ``count``, ``accuracy``, ``confidence`` (0 for empty bins).

  Args:
    probs: predicted probabilities ``(N, C)``.
    labels: integer labels ``(N,)``.
    num_bins: the number of bins (a positive int).

  Returns:
    A dict of three ``(num_bins,)`` arrays.
  """
  _check_bins(num_bins)
  probs, labels = _check_classification(probs, labels, binned=True)
  count, acc, conf = _bin_statistics(probs, labels, num_bins, False)
  return {"count": count, "accuracy": acc, "confidence": conf}


def rms_calibration_error(
    probs: ArrayLike, labels: ArrayLike, num_bins: int = 15, *, equal_mass: bool = False
) -> jax.Array:
  """Root-mean-square calibration error: ``sqrt(sum_m |B_m|/n (acc - conf)**2)``.

  Args:
    probs: predicted probabilities ``(N, C)``.
    labels: integer labels ``(N,)``.
    num_bins: the number of bins (a positive int).
    equal_mass: bins holding equal numbers of examples instead of equal widths.

  Returns:
    A scalar in [0, 1].
  """
  _check_bins(num_bins, equal_mass)
  probs, labels = _check_classification(probs, labels, binned=True)
  count, acc, conf = _bin_statistics(probs, labels, num_bins, equal_mass)
  return jnp.sqrt(jnp.sum(count * (acc - conf) ** 2) / jnp.sum(count))


def classwise_expected_calibration_error(
    probs: ArrayLike, labels: ArrayLike, num_bins: int = 15
) -> jax.Array:
  """Class-wise ECE: the equal-width-bin ECE of every class's probability, averaged.

  For class c the "confidence" is ``p_c`` of every example and the "accuracy" the
  frequency of label c in the bin.

  Args:
    probs: predicted probabilities ``(N, C)``.
    labels: integer labels ``(N,)``.
    num_bins: the number of bins (a positive int).

  Returns:
    A scalar in [0, 1].

  References:
    Kull et al. "Beyond temperature scaling." NeurIPS 2019; Nixon et al. "Measuring
    calibration in deep learning." CVPR workshops 2019.
  """
  _check_bins(num_bins)
  probs, labels = _check_classification(probs, labels, binned=True)
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


def _auroc(scores, positives):
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


def _average_precision(scores, positives):
  _, pos, n_ge, pos_ge = _threshold_counts(scores, positives)
  precision = pos_ge / n_ge
  return jnp.sum(pos * precision) / jnp.sum(pos)


def _fpr_at_tpr(scores, positives, tpr):
  _, pos, n_ge, pos_ge = _threshold_counts(scores, positives)
  n_pos = jnp.sum(pos)
  n_neg = pos.shape[0] - n_pos
  fpr = (n_ge - pos_ge) / n_neg
  reaches = pos_ge / n_pos >= tpr
  return jnp.min(jnp.where(reaches, fpr, 1.0))


@_keyword_only
def auroc(*, scores: ArrayLike, positives: ArrayLike) -> jax.Array:
  """Area under the ROC curve of ``scores`` (higher = more likely positive), ties averaged.

  Computed as the Mann-Whitney U statistic with average ranks; e.g. score = predictive
  entropy, positive = out-of-distribution or misclassified.

  Args:
    scores: ``(N,)`` finite scores, any real dtype.
    positives: ``(N,)`` booleans or 0/1, with both classes present.

  Returns:
    A scalar in [0, 1] (0.5 = chance).

  Example:
    >>> import jax.numpy as jnp
    >>> from dropjax import metrics
    >>> float(metrics.auroc(scores=jnp.array([0.1, 0.4, 0.35, 0.8]),
    ...                     positives=jnp.array([False, False, True, True])))
    0.75
  """
  _check_detection(scores, positives)
  return _auroc(scores, positives)


@_keyword_only
def average_precision(*, scores: ArrayLike, positives: ArrayLike) -> jax.Array:
  """Area under the precision-recall curve as average precision (tied scores share a threshold).

  Args:
    scores: ``(N,)`` finite scores (higher = more likely positive).
    positives: ``(N,)`` booleans or 0/1, with both classes present.

  Returns:
    A scalar in [0, 1].
  """
  _check_detection(scores, positives)
  return _average_precision(scores, positives)


@_keyword_only
def fpr_at_tpr(*, scores: ArrayLike, positives: ArrayLike, tpr: float = 0.95) -> jax.Array:
  """False-positive rate at the highest threshold whose true-positive rate is >= ``tpr``.

  Args:
    scores: ``(N,)`` finite scores (higher = more likely positive).
    positives: ``(N,)`` booleans or 0/1, with both classes present.
    tpr: the true-positive rate to reach, in (0, 1].

  Returns:
    A scalar in [0, 1].
  """
  _check_detection(scores, positives)
  _check_positive(tpr, "tpr", upper=1.0, hint=" (0.95, not 95)")
  return _fpr_at_tpr(scores, positives, tpr)


def accuracy_rejection_curve(
    probs: ArrayLike, labels: ArrayLike, uncertainty: ArrayLike | None = None,
    num_points: int = 21
) -> tuple[jax.Array, jax.Array]:
  """Accuracy on the retained examples after rejecting the most uncertain fraction.

  Args:
    probs: ``(N, C)``.
    labels: ``(N,)``.
    uncertainty: per-example score ``(N,)`` (higher = rejected first); default ``1 - max p``.
    num_points: rejection fractions ``linspace(0, 1, num_points)`` (the last keeps 1 example).

  Returns:
    ``(rejected_fraction, accuracy)``, each of length ``num_points``.
  """
  probs, labels = _check_classification(probs, labels, binned=True)
  _check_count(num_points, "num_points")
  probs, labels = jnp.asarray(probs), jnp.asarray(labels)
  if uncertainty is None:
    uncertainty = 1.0 - jnp.max(probs, -1)
  else:
    uncertainty = _array(uncertainty, "uncertainty")
    if tuple(uncertainty.shape) != tuple(labels.shape):
      raise ValueError(
          f"`uncertainty` must have shape (N,) = {tuple(labels.shape)} (one score per "
          f"example); got shape {tuple(uncertainty.shape)}.")
    _check_finite(uncertainty, "uncertainty")
  n = labels.shape[0]
  order = jnp.argsort(jnp.asarray(uncertainty), stable=True)
  correct = _correct(probs, labels)[order].astype(jnp.float32)
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

  Args:
    mean: predictive means ``(N,)``.
    std: predictive standard deviations ``(N,)``, >= 0 (not variances).
    targets: ``(N,)``.
    levels: ``(L,)`` central-interval probabilities in (0, 1), e.g. 0.95 (not 95).

  Returns:
    ``(L,)`` coverages in [0, 1].
  """
  arrays = {name: _array(value, name)
            for name, value in (("mean", mean), ("std", std), ("targets", targets))}
  _check_shape(arrays["mean"], "mean", "(N,)", ndim=1)
  for name in ("std", "targets"):
    if tuple(arrays[name].shape) != tuple(arrays["mean"].shape):
      raise ValueError(
          f"`{name}` must have the shape of `mean`, {tuple(arrays['mean'].shape)}; got "
          f"shape {tuple(arrays[name].shape)}.")
  for name, value in arrays.items():
    _check_finite(value, name)
  std_host = _host(arrays["std"])
  if std_host is not None and np.any(std_host < 0):
    raise ValueError(
        f"`std` must be >= 0 (standard deviations); got {std_host[_where(std_host < 0)]} at "
        f"index {_where(std_host < 0)}.")
  levels = _array(levels, "levels")
  _check_shape(levels, "levels", "(L,)", ndim=1)
  levels_host = _host(levels)
  if levels_host is not None and not np.all((levels_host > 0) & (levels_host < 1)):
    raise ValueError(
        f"`levels` must be probabilities in (0, 1), e.g. 0.95 (not 95); got "
        f"{levels_host.tolist()}.")
  mean, std, targets = (jnp.asarray(a, jnp.float32) for a in (mean, std, targets))
  z = jax.scipy.special.ndtri(0.5 + jnp.asarray(levels, jnp.float32) / 2.0)
  inside = jnp.abs(targets - mean)[None] <= z[:, None] * std[None]
  return jnp.mean(inside, axis=1)


def plot_reliability_diagram(probs: ArrayLike, labels: ArrayLike, num_bins: int = 15, ax=None,
                             label: str | None = None):
  """Draws accuracy against confidence per bin (matplotlib); returns the axes."""
  plt = require("matplotlib.pyplot", "plot_reliability_diagram")

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
  ece = _ece(*_bin_statistics(probs, labels, num_bins, False))
  ax.set_title(f"ECE {float(ece):.4f}")
  return ax


def summary(probs: ArrayLike, labels: ArrayLike, num_bins: int = 15) -> dict[str, float]:
  """Accuracy, NLL, Brier score and ECE as Python floats (one row of a results table).

  Args:
    probs: predicted probabilities ``(N, C)``.
    labels: integer labels ``(N,)``.
    num_bins: ECE bins.

  Returns:
    ``{"accuracy", "nll", "brier", "ece"}`` floats.
  """
  _check_bins(num_bins)
  probs, labels = _check_classification(probs, labels, binned=True)  # once for all four
  return {
      "accuracy": float(_accuracy(probs, labels)),
      "nll": float(_negative_log_likelihood(probs, labels, 1e-12)),
      "brier": float(_brier_score(probs, labels)),
      "ece": float(_ece(*_bin_statistics(probs, labels, num_bins, False))),
  }
