"""Predictive summaries of MC-dropout samples.

Classification takes sampled probabilities ``(S, N, C)`` (on the simplex: apply
``jax.nn.softmax`` to sampled logits first); regression takes sampled predictions
``(S, N)`` in the target's units and the model precision ``tau``. Shapes are checked
always, values (simplex, NaN, ``tau > 0``) when concrete, as in `dropjax.metrics`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dropjax.metrics import _array, _check_finite, _check_positive, _check_probs, _check_shape

ArrayLike = Any


def _check_sample_probs(sample_probs: ArrayLike) -> Any:
  return _check_probs(
      sample_probs, "sample_probs", ndim=3,
      layout="(S, N, C) (samples, examples, classes; one set of probabilities is probs[None])")


def _entropy(probs: jax.Array) -> jax.Array:
  # 0 log 0 = 0.
  return -jnp.sum(jnp.where(probs > 0, probs * jnp.log(jnp.where(probs > 0, probs, 1.0)), 0.0),
                  axis=-1)


def _predictive_entropy(sample_probs):
  return _entropy(jnp.mean(jnp.asarray(sample_probs), axis=0))


def _expected_entropy(sample_probs):
  return jnp.mean(_entropy(jnp.asarray(sample_probs)), axis=0)


def _mutual_information(sample_probs):
  return jnp.maximum(_predictive_entropy(sample_probs) - _expected_entropy(sample_probs), 0.0)


def _variation_ratio(sample_probs):
  sample_probs = jnp.asarray(sample_probs)
  votes = jax.nn.one_hot(jnp.argmax(sample_probs, -1), sample_probs.shape[-1]).sum(0)
  return 1.0 - jnp.max(votes, -1) / sample_probs.shape[0]


def predictive_entropy(sample_probs: ArrayLike) -> jax.Array:
  """``H[mean_s p_s]`` per example (nats): total uncertainty.

  Args:
    sample_probs: sampled probabilities ``(S, N, C)``.

  Returns:
    ``(N,)`` entropies in nats.

  Example:
    >>> import jax.numpy as jnp
    >>> from dropjax import uncertainty
    >>> uncertainty.predictive_entropy(jnp.array([[[1.0, 0.0]], [[0.0, 1.0]]]))
    Array([0.6931472], dtype=float32)
  """
  return _predictive_entropy(_check_sample_probs(sample_probs))


def expected_entropy(sample_probs: ArrayLike) -> jax.Array:
  """``mean_s H[p_s]`` per example: the aleatoric part.

  Args:
    sample_probs: sampled probabilities ``(S, N, C)``.

  Returns:
    ``(N,)`` entropies in nats.
  """
  return _expected_entropy(_check_sample_probs(sample_probs))


def mutual_information(sample_probs: ArrayLike) -> jax.Array:
  """BALD: ``H[mean p] - mean H[p]`` per example, the epistemic part (>= 0).

  Args:
    sample_probs: sampled probabilities ``(S, N, C)``.

  Returns:
    ``(N,)`` mutual informations in nats.

  References:
    Houlsby, Huszár, Ghahramani, Lengyel. "Bayesian active learning for classification and
    preference learning." 2011; Gal, Islam, Ghahramani. ICML 2017.
  """
  return _mutual_information(_check_sample_probs(sample_probs))


def variation_ratio(sample_probs: ArrayLike) -> jax.Array:
  """``1 - (votes for the modal class) / S`` per example (Freeman 1965).

  Args:
    sample_probs: sampled probabilities ``(S, N, C)``.

  Returns:
    ``(N,)`` ratios in [0, 1 - 1/C].
  """
  return _variation_ratio(_check_sample_probs(sample_probs))


def classification_summary(sample_probs: ArrayLike) -> dict[str, jax.Array]:
  """Mean probabilities and every uncertainty score of `sample_probs` ``(S, N, C)``.

  Args:
    sample_probs: sampled probabilities ``(S, N, C)``.

  Returns:
    ``mean_probs`` ``(N, C)`` and the four ``(N,)`` scores, by name.
  """
  sample_probs = _check_sample_probs(sample_probs)
  return {
      "mean_probs": jnp.mean(jnp.asarray(sample_probs), axis=0),
      "predictive_entropy": _predictive_entropy(sample_probs),
      "expected_entropy": _expected_entropy(sample_probs),
      "mutual_information": _mutual_information(sample_probs),
      "variation_ratio": _variation_ratio(sample_probs),
  }


def _check_regression(samples: ArrayLike, targets: ArrayLike | None = None,
                      tau: ArrayLike | None = None) -> None:
  samples = _array(samples, "samples")
  _check_shape(samples, "samples", "(T, N) (samples, examples)", min_ndim=2)
  _check_finite(samples, "samples")
  if targets is not None:
    targets = _array(targets, "targets")
    if tuple(targets.shape) != tuple(samples.shape[1:]):
      raise ValueError(
          f"`targets` must have shape samples.shape[1:] = {tuple(samples.shape[1:])}; got "
          f"shape {tuple(targets.shape)} with samples shape {tuple(samples.shape)}.")
    _check_finite(targets, "targets")
  if tau is not None:
    _check_positive(tau, "tau", hint=" (the model precision, 1 / noise variance)")


def regression_predictive(samples: ArrayLike, tau: ArrayLike) -> tuple[jax.Array, jax.Array]:
  """Predictive mean and variance: ``mean_t yhat_t`` and ``var_t yhat_t + 1/tau``.

  References:
    Gal, Ghahramani. "Dropout as a Bayesian approximation." ICML 2016, eq. 8-9.

  Args:
    samples: ``(T, N)`` sampled predictions.
    tau: the model precision, > 0.

  Returns:
    ``(mean, variance)``, each ``(N,)``.
  """
  _check_regression(samples, tau=tau)
  samples = jnp.asarray(samples)
  return jnp.mean(samples, 0), jnp.var(samples, 0) + 1.0 / jnp.asarray(tau, samples.dtype)


def mc_rmse(samples: ArrayLike, targets: ArrayLike) -> jax.Array:
  """RMSE of the MC mean prediction.

  Args:
    samples: ``(T, N)`` sampled predictions.
    targets: ``(N,)``.

  Returns:
    A scalar in the targets' units.
  """
  _check_regression(samples, targets)
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
  _check_regression(samples, targets, tau)
  samples, targets = jnp.asarray(samples), jnp.asarray(targets)
  tau = jnp.asarray(tau, samples.dtype)
  per_point = (
      jax.nn.logsumexp(-0.5 * tau * (targets[None] - samples) ** 2, axis=0)
      - jnp.log(samples.shape[0]) - 0.5 * np.log(2 * np.pi) + 0.5 * jnp.log(tau)
  )
  return jnp.mean(per_point)
