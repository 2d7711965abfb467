"""Predictive summaries against direct numpy computations."""

import numpy as np
import pytest
from scipy.special import logsumexp

from dropjax import uncertainty


def sample_probs(seed, s=30, n=50, c=4):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(s, n, c)) * 2
  return (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)


def test_classification_summaries_match_numpy():
  p = sample_probs(0)
  mean = p.mean(0)
  h_mean = -(mean * np.log(mean)).sum(-1)
  mean_h = -(p * np.log(p)).sum(-1).mean(0)
  summary = uncertainty.classification_summary(p)
  np.testing.assert_allclose(summary["mean_probs"], mean, rtol=1e-6)
  np.testing.assert_allclose(summary["predictive_entropy"], h_mean, rtol=1e-5)
  np.testing.assert_allclose(summary["expected_entropy"], mean_h, rtol=1e-5)
  np.testing.assert_allclose(summary["mutual_information"], h_mean - mean_h, atol=1e-5)
  votes = np.stack([np.bincount(p[:, i].argmax(-1), minlength=4) for i in range(p.shape[1])])
  np.testing.assert_allclose(summary["variation_ratio"], 1 - votes.max(1) / p.shape[0], atol=1e-6)


def test_agreeing_samples_have_zero_epistemic_uncertainty():
  p = np.broadcast_to(np.array([[0.7, 0.2, 0.1, 0.0]], np.float32), (10, 1, 4))
  assert float(uncertainty.mutual_information(p)[0]) == pytest.approx(0.0, abs=1e-6)
  assert float(uncertainty.variation_ratio(p)[0]) == 0.0
  assert np.isfinite(float(uncertainty.predictive_entropy(p)[0]))  # 0 log 0 = 0


def test_regression_log_likelihood_matches_direct_numpy():
  rng = np.random.default_rng(1)
  samples = rng.normal(size=(500, 40)) * 2 + 10
  targets = rng.normal(size=40) * 2 + 10
  tau = 0.3
  direct = np.mean(
      logsumexp(-0.5 * tau * (targets[None] - samples) ** 2, axis=0) - np.log(500)
      - 0.5 * np.log(2 * np.pi) + 0.5 * np.log(tau)
  )
  np.testing.assert_allclose(
      uncertainty.gaussian_mixture_log_likelihood(samples, targets, tau), direct, rtol=1e-5)
  # With one sample it is the Gaussian log-density.
  single = samples[:1]
  gauss = np.mean(-0.5 * tau * (targets - single[0]) ** 2 - 0.5 * np.log(2 * np.pi / tau))
  np.testing.assert_allclose(
      uncertainty.gaussian_mixture_log_likelihood(single, targets, tau), gauss, rtol=1e-5)
  # Far-off predictions: every exp underflows, the logsumexp form stays finite.
  far = uncertainty.gaussian_mixture_log_likelihood(samples + 1e4, targets, 1e4)
  assert np.isfinite(float(far))


def test_regression_predictive_moments_and_rmse():
  rng = np.random.default_rng(2)
  samples = rng.normal(size=(100, 30))
  targets = rng.normal(size=30)
  mean, var = uncertainty.regression_predictive(samples, 4.0)
  np.testing.assert_allclose(mean, samples.mean(0), rtol=1e-5, atol=1e-6)  # float32
  np.testing.assert_allclose(var, samples.var(0) + 0.25, rtol=1e-5)
  np.testing.assert_allclose(uncertainty.mc_rmse(samples, targets),
                             np.sqrt(np.mean((samples.mean(0) - targets) ** 2)), rtol=1e-5)


def test_sample_probs_are_checked_when_concrete_only():
  import jax

  p = sample_probs(3)
  with pytest.raises(ValueError, match=r"\(S, N, C\)"):
    uncertainty.predictive_entropy(p[0])  # one set of probabilities: needs p[0][None]
  np.testing.assert_allclose(uncertainty.predictive_entropy(p[0][None]),
                             uncertainty.expected_entropy(p[0][None]), rtol=1e-6)
  with pytest.raises(ValueError, match="Did you pass logits"):
    uncertainty.classification_summary(np.log(p))
  # Traced (here vmapped over runs): values unchecked, the trace unharmed.
  jax.vmap(uncertainty.mutual_information)(np.stack([np.log(p), p]))


def test_regression_inputs_are_checked():
  samples, targets = np.zeros((5, 3)), np.zeros(3)
  with pytest.raises(ValueError, match="tau"):
    uncertainty.regression_predictive(samples, -1.0)
  with pytest.raises(ValueError, match=r"samples.*\(T, N\)"):
    uncertainty.mc_rmse(targets, targets)
  with pytest.raises(ValueError, match="finite"):
    uncertainty.gaussian_mixture_log_likelihood(samples + np.nan, targets, 1.0)
