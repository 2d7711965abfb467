"""Streaming classification metrics: accumulated over batches and devices, computed once.

Each metric equals its whole-batch function in `dropjax.metrics` on the concatenated data,
for any split into batches or shards: up to float rounding of the running sums, while the
counts and the sample-based metrics (equal-mass ECE/MCE, AUROC) are bitwise equal. (Accuracy
divides the same count by n, correctly rounded here; `jnp.mean` in the batch function lets
XLA multiply by 1/n instead, which can differ by 1 ulp.) Two layers:

* **Functional states** (pytrees; ``jit``, ``vmap`` and ``shard_map`` friendly), each with
  ``empty``, ``update(state, ...)``, ``merge(a, b)`` and ``compute(state)``:

  - `ClassificationStats`: accuracy, NLL, Brier score, equal-width ECE and MCE from
    fixed-size sufficient statistics (one count and three sums, plus three per-bin
    arrays). Every field is a sum, so ``merge`` is addition and a ``jax.lax.psum`` of a
    state over a device axis is the merge of all devices' states.
  - `ConfidenceSample`: equal-mass ECE and MCE. Equal-mass bin edges depend on every
    confidence, so the state keeps them all (5 bytes per example, growing).
  - `ScoreSample`: exact AUROC, average precision and FPR at a TPR; the ranks need every
    score, so it keeps them all (5 bytes per example, growing).

  Growing states change shape on every update, so a jitted update retraces per batch
  size; across devices, ``jax.lax.all_gather`` them (or merge on the host).

* **`flax.nnx.Metric` classes** with ``reset``/``update``/``compute``, in the style of
  ``flax.nnx.metrics`` and usable in ``nnx.MultiMetric``: `ClassificationMetrics`,
  `Accuracy`, `NegativeLogLikelihood`, `BrierScore`, `ExpectedCalibrationError`,
  `MaximumCalibrationError` (``update(probs=, labels=)``) and `AUROC`
  (``update(scores=, positives=)``). Extra keyword arguments are ignored, as in flax.

Every update checks its inputs like the whole-batch functions do (shapes and dtypes
always; values when concrete); `AUROC` needs both classes only in the whole stream, so
that check waits for ``compute``. ``compute`` of an empty state raises when concrete.

Example:
  >>> import jax.numpy as jnp
  >>> from dropjax import metrics, streaming
  >>> probs = jnp.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
  >>> labels = jnp.array([0, 0, 0])
  >>> metric = streaming.ExpectedCalibrationError(num_bins=10)
  >>> metric.update(probs=probs[:2], labels=labels[:2])
  >>> metric.update(probs=probs[2:], labels=labels[2:])
  >>> round(float(metric.compute()), 4)
  0.4333
  >>> round(float(metrics.expected_calibration_error(probs, labels, num_bins=10)), 4)
  0.4333
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx, struct

from dropjax import metrics as _m

ArrayLike = Any

_NLL_EPS = 1e-12  # the default floor of `metrics.negative_log_likelihood`


def _check_nonempty(count: Any, what: str) -> None:
  host = _m._host(count)
  if host is not None and int(host) == 0:
    raise ValueError(f"{what} has seen no examples: call update (or merge) before compute.")


def _check_same_kind(other: Any, cls: type) -> None:
  if not isinstance(other, cls):
    raise TypeError(f"`merge` needs two {cls.__name__} states; got {type(other).__name__}.")


@struct.dataclass
class ClassificationStats:
  """Fixed-memory sufficient statistics of (probs, labels) batches.

  Attributes:
    count: examples seen (int32).
    correct: examples whose arg-max class is the label (int32).
    nll_sum: sum of ``-log max(p_label, 1e-12)`` (float32).
    brier_sum: sum of ``sum_c (p_c - 1[c = label])**2`` (float32).
    bin_count: ``(num_bins,)`` examples per equal-width confidence bin (int32).
    bin_confidence: ``(num_bins,)`` sum of top-label confidences per bin (float32).
    bin_correct: ``(num_bins,)`` correct examples per bin (int32).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from dropjax.streaming import ClassificationStats
    >>> probs = jax.nn.softmax(jax.random.normal(jax.random.key(0), (100, 3)))
    >>> labels = jax.random.randint(jax.random.key(1), (100,), 0, 3)
    >>> a = ClassificationStats.update(ClassificationStats.empty(15), probs[:60], labels[:60])
    >>> b = jax.jit(ClassificationStats.update)(ClassificationStats.empty(15), probs[60:],
    ...                                         labels[60:])
    >>> stats = ClassificationStats.merge(a, b)
    >>> int(stats.count), round(float(ClassificationStats.compute(stats)["accuracy"]), 3)
    (100, 0.3)
  """

  count: jax.Array
  correct: jax.Array
  nll_sum: jax.Array
  brier_sum: jax.Array
  bin_count: jax.Array
  bin_confidence: jax.Array
  bin_correct: jax.Array

  @classmethod
  def empty(cls, num_bins: int = 15) -> ClassificationStats:
    """The state of no examples, with ``num_bins`` equal-width ECE bins."""
    num_bins = _m._check_count(num_bins, "num_bins")
    zero_i, zero_f = jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32)
    return cls(count=zero_i, correct=zero_i, nll_sum=zero_f, brier_sum=zero_f,
               bin_count=jnp.zeros(num_bins, jnp.int32),
               bin_confidence=jnp.zeros(num_bins, jnp.float32),
               bin_correct=jnp.zeros(num_bins, jnp.int32))

  @property
  def num_bins(self) -> int:
    return self.bin_count.shape[-1]

  def update(self, probs: ArrayLike, labels: ArrayLike) -> ClassificationStats:
    """The state after also seeing a batch.

    Args:
      probs: predicted probabilities ``(N, C)`` (not logits).
      labels: integer labels ``(N,)`` in ``[0, C)``.

    Returns:
      A new state (this one is unchanged).
    """
    probs, labels = _m._check_classification(probs, labels, binned=True)
    probs, labels = jnp.asarray(probs), jnp.asarray(labels)
    correct = _m._correct(probs, labels)
    count, conf_sum, acc_sum = _m._bin_sums(jnp.max(probs, -1), correct, self.num_bins, False)
    nll = -jnp.log(jnp.maximum(_m._picked(probs, labels), _NLL_EPS))
    return ClassificationStats(
        count=self.count + labels.shape[0],
        correct=self.correct + jnp.sum(correct, dtype=jnp.int32),
        nll_sum=self.nll_sum + jnp.sum(nll).astype(jnp.float32),
        brier_sum=self.brier_sum + jnp.sum(_m._squared_errors(probs, labels)).astype(
            jnp.float32),
        bin_count=self.bin_count + count.astype(jnp.int32),
        bin_confidence=self.bin_confidence + conf_sum,
        bin_correct=self.bin_correct + acc_sum.astype(jnp.int32),
    )

  def merge(self, other: ClassificationStats) -> ClassificationStats:
    """The state of both states' examples (e.g. from two devices or shards)."""
    _check_same_kind(other, ClassificationStats)
    if other.num_bins != self.num_bins:
      raise ValueError(
          f"`merge` needs states with the same num_bins; got {self.num_bins} and "
          f"{other.num_bins}.")
    return jax.tree.map(jnp.add, self, other)

  def compute(self) -> dict[str, jax.Array]:
    """``accuracy``, ``nll``, ``brier``, ``ece`` and ``mce`` (equal-width bins)."""
    _check_nonempty(self.count, "ClassificationStats")
    n = self.count.astype(jnp.float32)
    bins = _m._bin_means(self.bin_count.astype(jnp.float32), self.bin_confidence,
                         self.bin_correct.astype(jnp.float32))
    return {
        "accuracy": self.correct.astype(jnp.float32) / n,
        "nll": self.nll_sum / n,
        "brier": self.brier_sum / n,
        "ece": _m._ece(*bins),
        "mce": _m._mce(*bins),
    }


@struct.dataclass
class ConfidenceSample:
  """Every top-label confidence and whether it was correct: exact equal-mass calibration.

  Memory grows with the examples seen (5 bytes each): equal-mass bin edges are quantiles
  of all confidences, which no fixed-size summary gives exactly.

  Attributes:
    confidence: ``(n,)`` float32 top-label confidences.
    correct: ``(n,)`` bool, arg-max class == label.
  """

  confidence: jax.Array
  correct: jax.Array

  @classmethod
  def empty(cls) -> ConfidenceSample:
    """The state of no examples."""
    return cls(confidence=jnp.zeros((0,), jnp.float32), correct=jnp.zeros((0,), bool))

  def update(self, probs: ArrayLike, labels: ArrayLike) -> ConfidenceSample:
    """The state after also seeing a batch of ``probs`` ``(N, C)`` and ``labels`` ``(N,)``."""
    probs, labels = _m._check_classification(probs, labels, binned=True)
    probs, labels = jnp.asarray(probs), jnp.asarray(labels)
    return ConfidenceSample(
        confidence=jnp.concatenate([self.confidence, jnp.max(probs, -1).astype(jnp.float32)]),
        correct=jnp.concatenate([self.correct, _m._correct(probs, labels)]))

  def merge(self, other: ConfidenceSample) -> ConfidenceSample:
    """Both states' examples (this one's first)."""
    _check_same_kind(other, ConfidenceSample)
    return jax.tree.map(lambda a, b: jnp.concatenate([a, b]), self, other)

  def compute(self, num_bins: int = 15) -> dict[str, jax.Array]:
    """``ece`` and ``mce`` over ``num_bins`` equal-mass bins."""
    _m._check_bins(num_bins)
    _check_nonempty(self.confidence.shape[0], "ConfidenceSample")
    bins = _m._bin_means(*_m._bin_sums(self.confidence, self.correct, num_bins, True))
    return {"ece": _m._ece(*bins), "mce": _m._mce(*bins)}


@struct.dataclass
class ScoreSample:
  """Every detection score and its positive flag: exact AUROC, AP and FPR at a TPR.

  Memory grows with the examples seen (5 bytes each): exact ranks need every score.

  Attributes:
    scores: ``(n,)`` float32 scores (higher = more likely positive).
    positives: ``(n,)`` bool.
  """

  scores: jax.Array
  positives: jax.Array

  @classmethod
  def empty(cls) -> ScoreSample:
    """The state of no examples."""
    return cls(scores=jnp.zeros((0,), jnp.float32), positives=jnp.zeros((0,), bool))

  def update(self, *, scores: ArrayLike, positives: ArrayLike) -> ScoreSample:
    """The state after also seeing ``scores`` ``(N,)`` and ``positives`` ``(N,)`` (0/1).

    A batch may hold one class only; both are needed by ``compute``.
    """
    _m._check_detection(scores, positives, both_classes=False)
    return ScoreSample(
        scores=jnp.concatenate([self.scores, jnp.asarray(scores, jnp.float32)]),
        positives=jnp.concatenate([self.positives, jnp.asarray(positives).astype(bool)]))

  def merge(self, other: ScoreSample) -> ScoreSample:
    """Both states' examples (this one's first)."""
    _check_same_kind(other, ScoreSample)
    return jax.tree.map(lambda a, b: jnp.concatenate([a, b]), self, other)

  def compute(self, tpr: float = 0.95) -> dict[str, jax.Array]:
    """``auroc``, ``average_precision`` and ``fpr_at_tpr`` (at ``tpr``)."""
    _check_nonempty(self.scores.shape[0], "ScoreSample")
    _m._check_detection(self.scores, self.positives)
    _m._check_positive(tpr, "tpr", upper=1.0, hint=" (0.95, not 95)")
    return {
        "auroc": _m._auroc(self.scores, self.positives),
        "average_precision": _m._average_precision(self.scores, self.positives),
        "fpr_at_tpr": _m._fpr_at_tpr(self.scores, self.positives, tpr),
    }


# ---------------------------------------------------------------------------------------
# flax.nnx.Metric classes: one functional state in a MetricState, updated in place.


class _StateMetric(nnx.Metric):
  """Holds one functional state; subclasses say how to make, update and read it."""

  def _empty(self):
    raise NotImplementedError

  def reset(self) -> None:
    """Forgets every example."""
    self.state.set_value(self._empty())

  def _set(self, state) -> None:
    self.state.set_value(state)

  def _get(self):
    return self.state.get_value()


class ClassificationMetrics(_StateMetric):
  """Accuracy, NLL, Brier score, equal-width ECE and MCE in one fixed-memory pass.

  Example:
    >>> import jax.numpy as jnp
    >>> from dropjax.streaming import ClassificationMetrics
    >>> metric = ClassificationMetrics(num_bins=15)
    >>> metric.update(probs=jnp.array([[0.9, 0.1], [0.4, 0.6]]), labels=jnp.array([0, 0]))
    >>> {k: round(float(v), 3) for k, v in metric.compute().items()}
    {'accuracy': 0.5, 'nll': 0.511, 'brier': 0.37, 'ece': 0.35, 'mce': 0.6}
  """

  def __init__(self, num_bins: int = 15):
    """Makes an empty metric.

    Args:
      num_bins: equal-width ECE/MCE bins (a positive int).
    """
    self.num_bins = _m._check_count(num_bins, "num_bins")
    self.state = nnx.metrics.MetricState(self._empty())

  def _empty(self):
    return ClassificationStats.empty(self.num_bins)

  def update(self, *, probs: ArrayLike, labels: ArrayLike, **_) -> None:
    """Adds a batch: ``probs`` ``(N, C)`` probabilities, ``labels`` ``(N,)`` ints."""
    self._set(self._get().update(probs, labels))

  def compute(self) -> dict[str, jax.Array]:
    """``accuracy``, ``nll``, ``brier``, ``ece`` and ``mce`` of every example seen."""
    return self._get().compute()


class _OneOfClassification(ClassificationMetrics):
  key = ""

  def __init__(self):
    super().__init__(num_bins=1)  # bins unused by accuracy, NLL and Brier

  def compute(self) -> jax.Array:
    return self._get().compute()[self.key]


class Accuracy(_OneOfClassification):
  """Streaming `dropjax.metrics.accuracy` (bitwise equal on the concatenated batches).

  Takes probabilities, ``update(probs=, labels=)``; ``flax.nnx.metrics.Accuracy`` takes
  logits instead.
  """

  key = "accuracy"


class NegativeLogLikelihood(_OneOfClassification):
  """Streaming `dropjax.metrics.negative_log_likelihood` (eps = 1e-12)."""

  key = "nll"


class BrierScore(_OneOfClassification):
  """Streaming `dropjax.metrics.brier_score`."""

  key = "brier"


class ExpectedCalibrationError(_StateMetric):
  """Streaming `dropjax.metrics.expected_calibration_error`.

  Equal-width bins keep fixed-size per-bin sums; ``equal_mass=True`` keeps every
  confidence (memory grows with the examples, 5 bytes each), since its bin edges are
  quantiles of the whole sample.
  """

  key = "ece"

  def __init__(self, num_bins: int = 15, *, equal_mass: bool = False):
    """Makes an empty metric.

    Args:
      num_bins: the number of bins (a positive int).
      equal_mass: equal-mass instead of equal-width bins.
    """
    _m._check_bins(num_bins, equal_mass)
    self.num_bins, self.equal_mass = int(num_bins), bool(equal_mass)
    self.state = nnx.metrics.MetricState(self._empty())

  def _empty(self):
    return ConfidenceSample.empty() if self.equal_mass else ClassificationStats.empty(
        self.num_bins)

  def update(self, *, probs: ArrayLike, labels: ArrayLike, **_) -> None:
    """Adds a batch: ``probs`` ``(N, C)`` probabilities, ``labels`` ``(N,)`` ints."""
    self._set(self._get().update(probs, labels))

  def compute(self) -> jax.Array:
    """The calibration error of every example seen."""
    state = self._get()
    out = state.compute(self.num_bins) if self.equal_mass else state.compute()
    return out[self.key]


class MaximumCalibrationError(ExpectedCalibrationError):
  """Streaming `dropjax.metrics.maximum_calibration_error` (see `ExpectedCalibrationError`)."""

  key = "mce"


class AUROC(_StateMetric):
  """Streaming exact `dropjax.metrics.auroc`: keeps every score (5 bytes per example).

  Example:
    >>> import jax.numpy as jnp
    >>> from dropjax.streaming import AUROC
    >>> metric = AUROC()
    >>> metric.update(scores=jnp.array([0.1, 0.4]), positives=jnp.array([False, False]))
    >>> metric.update(scores=jnp.array([0.35, 0.8]), positives=jnp.array([True, True]))
    >>> float(metric.compute())
    0.75
  """

  def __init__(self):
    self.state = nnx.metrics.MetricState(self._empty())

  def _empty(self):
    return ScoreSample.empty()

  def update(self, *, scores: ArrayLike, positives: ArrayLike, **_) -> None:
    """Adds ``scores`` ``(N,)`` and ``positives`` ``(N,)`` (booleans or 0/1)."""
    self._set(self._get().update(scores=scores, positives=positives))

  def compute(self) -> jax.Array:
    """The AUROC of every example seen (both classes needed)."""
    return self._get().compute()["auroc"]


__all__ = [
    "AUROC",
    "Accuracy",
    "BrierScore",
    "ClassificationMetrics",
    "ClassificationStats",
    "ConfidenceSample",
    "ExpectedCalibrationError",
    "MaximumCalibrationError",
    "NegativeLogLikelihood",
    "ScoreSample",
]
