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
