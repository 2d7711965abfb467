"""Metrics against straightforward numpy implementations and hand-computed cases."""

import jax
import numpy as np
import pytest

from dropjax import metrics


def numpy_ece(probs, labels, bins, equal_mass=False):
  conf = probs.max(1)
  correct = probs.argmax(1) == labels
  n = len(conf)
  if equal_mass:
    order = np.argsort(conf, kind="stable")
    groups = np.array_split(order, bins)
  else:
    edges = np.linspace(0, 1, bins + 1)
    groups = []
    for m in range(bins):
      lo, hi = edges[m], edges[m + 1]
      in_bin = (conf > lo) & (conf <= hi) if m > 0 else (conf >= lo) & (conf <= hi)
      groups.append(np.flatnonzero(in_bin))
  total, worst = 0.0, 0.0
  for g in groups:
    if len(g):
      gap = abs(correct[g].mean() - conf[g].mean())
      total += len(g) / n * gap
      worst = max(worst, gap)
  return total, worst


def random_predictions(seed, n=2000, c=5):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(n, c)) * rng.uniform(0.5, 4)
  probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  labels = rng.integers(0, c, n)
  return probs.astype(np.float32), labels


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("bins", [10, 15])
def test_ece_and_mce_match_numpy(seed, bins):
  probs, labels = random_predictions(seed)
  ece, mce = numpy_ece(probs, labels, bins)
  np.testing.assert_allclose(metrics.expected_calibration_error(probs, labels, bins), ece,
                             atol=1e-6)
  np.testing.assert_allclose(metrics.maximum_calibration_error(probs, labels, bins), mce,
                             atol=1e-6)


def test_equal_mass_ece_matches_numpy():
  probs, labels = random_predictions(7, n=1500)
  ece, _ = numpy_ece(probs, labels, 15, equal_mass=True)
  np.testing.assert_allclose(
      metrics.expected_calibration_error(probs, labels, 15, equal_mass=True), ece, atol=1e-6)


def test_hand_computed_calibration_cases():
  # Confidence 0.8, accuracy 4/5: perfectly calibrated.
  probs = np.array([[0.2, 0.8]] * 5, np.float32)
  assert float(metrics.expected_calibration_error(probs, np.array([1, 1, 1, 1, 0]))) == 0.0
  # Confidence exactly 1.0 lands in the last bin, and an error there counts fully.
  probs = np.array([[1.0, 0.0], [1.0, 0.0]], np.float32)
  data = metrics.reliability_diagram_data(probs, np.array([0, 1]), 15)
  assert float(data["count"][-1]) == 2 and float(data["count"][:-1].sum()) == 0
  np.testing.assert_allclose(metrics.expected_calibration_error(probs, np.array([0, 1])), 0.5)
  # The gap is absolute, not squared: one bin, confidence 0.9, accuracy 0.5.
  probs = np.array([[0.9, 0.1]] * 2, np.float32)
  np.testing.assert_allclose(metrics.expected_calibration_error(probs, np.array([0, 1])), 0.4,
                             rtol=1e-6)


def test_nll_brier_accuracy_match_numpy():
  probs, labels = random_predictions(3)
  picked = probs[np.arange(len(labels)), labels]
  np.testing.assert_allclose(metrics.negative_log_likelihood(probs, labels), -np.log(picked).mean(),
                             rtol=1e-5)
  onehot = np.eye(probs.shape[1])[labels]
  np.testing.assert_allclose(metrics.brier_score(probs, labels),
                             ((probs - onehot) ** 2).sum(1).mean(), rtol=1e-5)
  np.testing.assert_allclose(metrics.accuracy(probs, labels), (probs.argmax(1) == labels).mean())
  # A confident mistake is finite.
  assert np.isfinite(float(metrics.negative_log_likelihood(np.array([[1.0, 0.0]]), np.array([1]))))


def test_metrics_are_jittable():
  probs, labels = random_predictions(1)
  jitted = jax.jit(metrics.expected_calibration_error, static_argnums=2)(probs, labels, 15)
  np.testing.assert_allclose(jitted, metrics.expected_calibration_error(probs, labels, 15))


def test_rms_and_classwise_ece_match_numpy():
  probs, labels = random_predictions(5, n=1000, c=4)
  conf, correct = probs.max(1), probs.argmax(1) == labels
  edges = np.linspace(0, 1, 16)
  rms = 0.0
  for m in range(15):
    sel = (conf > edges[m]) & (conf <= edges[m + 1])
    if sel.any():
      rms += sel.mean() * (correct[sel].mean() - conf[sel].mean()) ** 2
  np.testing.assert_allclose(metrics.rms_calibration_error(probs, labels), np.sqrt(rms), atol=1e-6)
  classwise = []
  for c in range(4):
    p, hit = probs[:, c], labels == c
    total = 0.0
    for m in range(15):
      sel = (p > edges[m]) & (p <= edges[m + 1]) if m else (p >= 0) & (p <= edges[1])
      if sel.any():
        total += sel.mean() * abs(hit[sel].mean() - p[sel].mean())
    classwise.append(total)
  np.testing.assert_allclose(metrics.classwise_expected_calibration_error(probs, labels),
                             np.mean(classwise), atol=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_detection_metrics_match_sklearn_with_ties(seed):
  from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

  rng = np.random.default_rng(seed)
  positives = rng.integers(0, 2, 700).astype(bool)
  scores = np.round(rng.normal(size=700) + positives, 1)  # rounding makes ties
  np.testing.assert_allclose(metrics.auroc(scores=scores, positives=positives),
                             roc_auc_score(positives, scores), rtol=1e-6)
  np.testing.assert_allclose(metrics.average_precision(scores=scores, positives=positives),
                             average_precision_score(positives, scores), rtol=1e-5)
  fpr, tpr, _ = roc_curve(positives, scores)
  np.testing.assert_allclose(metrics.fpr_at_tpr(scores=scores, positives=positives, tpr=0.95),
                             fpr[np.argmax(tpr >= 0.95)], rtol=1e-6)


def test_detection_hand_cases():
  positives = np.array([0, 0, 1, 1], bool)
  rising = np.array([0.1, 0.2, 0.8, 0.9])
  assert float(metrics.auroc(scores=rising, positives=positives)) == 1.0
  assert float(metrics.auroc(scores=rising[::-1], positives=positives)) == 0.0
  assert float(metrics.auroc(scores=np.ones(4), positives=positives)) == 0.5
  assert float(metrics.average_precision(scores=rising, positives=positives)) == 1.0
  assert float(metrics.fpr_at_tpr(scores=rising, positives=positives)) == 0.0


def test_accuracy_rejection_curve():
  probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.55, 0.45], [0.99, 0.01]], np.float32)
  labels = np.array([0, 1, 1, 0])
  fractions, acc = metrics.accuracy_rejection_curve(probs, labels, num_points=5)
  np.testing.assert_allclose(fractions, [0, 0.25, 0.5, 0.75, 1.0])
  # Most confident first: correct, correct, wrong, wrong.
  np.testing.assert_allclose(acc, [0.5, 2 / 3, 1.0, 1.0, 1.0])


def test_interval_coverage_of_a_calibrated_gaussian():
  rng = np.random.default_rng(0)
  n = 200_000
  mean, std = rng.normal(size=n), rng.uniform(0.5, 2, n)
  targets = mean + std * rng.normal(size=n)
  levels = np.array([0.5, 0.9, 0.99])
  coverage = np.asarray(metrics.interval_coverage(mean, std, targets, levels))
  assert np.all(np.abs(coverage - levels) <= 5 * np.sqrt(levels * (1 - levels) / n))


def test_reliability_diagram_draws(tmp_path):
  import matplotlib

  matplotlib.use("Agg")
  probs, labels = random_predictions(0, n=300)
  ax = metrics.plot_reliability_diagram(probs, labels)
  ax.figure.savefig(tmp_path / "reliability.png")
  assert (tmp_path / "reliability.png").stat().st_size > 0


def test_summary_collects_the_four_headline_metrics():
  probs, labels = random_predictions(2)
  row = metrics.summary(probs, labels, 15)
  assert row == {
      "accuracy": float(metrics.accuracy(probs, labels)),
      "nll": float(metrics.negative_log_likelihood(probs, labels)),
      "brier": float(metrics.brier_score(probs, labels)),
      "ece": float(metrics.expected_calibration_error(probs, labels, 15)),
  }


# Input checks (issue #18). The refusals themselves are rows of test_bad_inputs.py
# (bad_inputs_metrics.py); these tests pin what must still be accepted.


def test_probability_rows_are_accepted_within_a_dtype_aware_tolerance():
  probs, labels = random_predictions(11, n=50)
  off = probs.copy()
  off[:, 0] += 5e-3  # rows sum to 1.005
  with pytest.raises(ValueError, match="Did you pass logits"):
    metrics.accuracy(off, labels)
  # 16-bit rows round to ~4e-3 per row: 1e-2 is allowed there.
  metrics.accuracy(jax.numpy.asarray(off, jax.numpy.bfloat16), labels)
  metrics.accuracy(jax.numpy.asarray(probs, jax.numpy.float16), labels)
  # Softmax of huge logits (exact 0 and 1 entries), one-hot integer rows, tiny negatives.
  metrics.negative_log_likelihood(jax.nn.softmax(100 * np.asarray(probs)), labels)
  metrics.brier_score(np.eye(5, dtype=np.int32)[labels], labels)
  metrics.accuracy(np.array([[1.0 + 1e-7, -1e-7]], np.float32), np.array([0]))


def test_values_are_unchecked_when_traced_and_shapes_are_checked():
  probs, labels = random_predictions(12, n=20)
  bad = labels.copy()
  bad[0] = -1
  with pytest.raises(ValueError, match="labels"):
    metrics.accuracy(probs, bad)
  # Traced values cannot be inspected: they pass through and the trace is not broken.
  jax.jit(metrics.accuracy)(probs, bad)
  jax.jit(metrics.negative_log_likelihood)(np.log(probs), labels)
  jax.vmap(metrics.expected_calibration_error, in_axes=(0, 0, None))(
      np.stack([probs, probs]), np.stack([labels, labels]), 15)
  scores = np.linspace(0, 1, 20)
  jax.jit(metrics.auroc)(scores=scores, positives=scores)
  with pytest.raises(ValueError, match=r"\(20,\)"):
    jax.jit(metrics.brier_score)(probs, labels[:, None])


def test_positives_may_be_bool_int_or_float_zero_one():
  rng = np.random.default_rng(13)
  positives = rng.integers(0, 2, 200).astype(bool)
  scores = rng.normal(size=200) + positives
  values = {float(metrics.auroc(scores=scores, positives=positives.astype(t)))
            for t in (bool, np.int32, np.float64)}
  assert len(values) == 1


def test_detection_arguments_are_keyword_only():
  import inspect

  for fn in (metrics.auroc, metrics.average_precision, metrics.fpr_at_tpr):
    parameters = inspect.signature(fn).parameters
    assert list(parameters)[:2] == ["scores", "positives"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters.values())
    with pytest.raises(TypeError, match="keyword arguments only"):
      fn(np.ones(4), np.array([0, 1, 0, 1]))
