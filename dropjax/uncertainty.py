"""Predictive summaries of MC-dropout samples.

Classification takes sampled probabilities ``(S, N, C)``; regression takes sampled
predictions ``(S, N)`` in the target's units and the model precision ``tau``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

ArrayLike = Any


def _entropy(probs: jax.Array) -> jax.Array:
  # 0 log 0 = 0.
  return -jnp.sum(jnp.where(probs > 0, probs * jnp.log(jnp.where(probs > 0, probs, 1.0)), 0.0),
                  axis=-1)


def predictive_entropy(sample_probs: ArrayLike) -> jax.Array:
  """``H[mean_s p_s]`` per example (nats): total uncertainty."""
  return _entropy(jnp.mean(jnp.asarray(sample_probs), axis=0))


def expected_entropy(sample_probs: ArrayLike) -> jax.Array:
  """``mean_s H[p_s]`` per example: the aleatoric part."""
  return jnp.mean(_entropy(jnp.asarray(sample_probs)), axis=0)


def mutual_information(sample_probs: ArrayLike) -> jax.Array:
  """BALD: ``H[mean p] - mean H[p]`` per example, the epistemic part (>= 0).

  References:
    Houlsby, Huszár, Ghahramani, Lengyel. "Bayesian active learning for classification and
    preference learning." 2011; Gal, Islam, Ghahramani. ICML 2017.
  """
  return jnp.maximum(predictive_entropy(sample_probs) - expected_entropy(sample_probs), 0.0)


def variation_ratio(sample_probs: ArrayLike) -> jax.Array:
  """``1 - (votes for the modal class) / S`` per example (Freeman 1965)."""
  sample_probs = jnp.asarray(sample_probs)
  votes = jax.nn.one_hot(jnp.argmax(sample_probs, -1), sample_probs.shape[-1]).sum(0)
  return 1.0 - jnp.max(votes, -1) / sample_probs.shape[0]


def classification_summary(sample_probs: ArrayLike) -> dict[str, jax.Array]:
  """Mean probabilities and every uncertainty score of `sample_probs` ``(S, N, C)``."""
  return {
      "mean_probs": jnp.mean(jnp.asarray(sample_probs), axis=0),
      "predictive_entropy": predictive_entropy(sample_probs),
      "expected_entropy": expected_entropy(sample_probs),
      "mutual_information": mutual_information(sample_probs),
      "variation_ratio": variation_ratio(sample_probs),
  }


def regression_predictive(samples: ArrayLike, tau: ArrayLike) -> tuple[jax.Array, jax.Array]:
  """Predictive mean and variance: ``mean_t yhat_t`` and ``var_t yhat_t + 1/tau``.

  References:
    Gal, Ghahramani. "Dropout as a Bayesian approximation." ICML 2016, eq. 8-9.
  """
  samples = jnp.asarray(samples)
  return jnp.mean(samples, 0), jnp.var(samples, 0) + 1.0 / jnp.asarray(tau, samples.dtype)


def mc_rmse(samples: ArrayLike, targets: ArrayLike) -> jax.Array:
  """RMSE of the MC mean prediction."""
  return jnp.sqrt(jnp.mean((jnp.mean(jnp.asarray(samples), 0) - jnp.asarray(targets)) ** 2))


def gaussian_mixture_log_likelihood(
    samples: ArrayLike, targets: ArrayLike, tau: ArrayLike
) -> jax.Array:
  r"""Mean test log-likelihood of the MC mixture of Gaussians N(yhat_t, 1/tau).

  .. math::
     \frac1N \sum_i \Big[\operatorname{logsumexp}_t\big(-\tfrac{\tau}{2}(y_i - \hat y_{ti})^2\big)
     - \log T - \tfrac12 \log 2\pi + \tfrac12 \log \tau\Big]

  in the logsumexp form, so it stays finite when every term underflows.

  Args:
    samples: ``(T, N)`` sampled predictions, in the target's units.
    targets: ``(N,)``.
    tau: the model precision in the same units.

  Returns:
    A scalar (nats per point).

  References:
    Gal, Ghahramani. ICML 2016; reference code yaringal/DropoutUncertaintyExps.
  """
  samples, targets = jnp.asarray(samples), jnp.asarray(targets)
  tau = jnp.asarray(tau, samples.dtype)
  per_point = (
      jax.nn.logsumexp(-0.5 * tau * (targets[None] - samples) ** 2, axis=0)
      - jnp.log(samples.shape[0]) - 0.5 * np.log(2 * np.pi) + 0.5 * jnp.log(tau)
  )
  return jnp.mean(per_point)
