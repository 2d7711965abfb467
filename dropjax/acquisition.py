"""Active-learning acquisition functions over MC-dropout samples.

Each function maps sampled class probabilities ``(S, N, C)`` to one score per pool example
``(N,)``; higher means "label this next". They are pure and vmappable, so one program can
score the pools of many runs at once (one per acquisition function and seed).

References:
  Gal, Islam, Ghahramani. "Deep Bayesian active learning with image data." ICML 2017.
  Houlsby, Huszár, Ghahramani, Lengyel. "Bayesian active learning for classification and
  preference learning." 2011 (BALD).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dropjax import uncertainty
from dropjax.metrics import _array, _check_count, _check_finite, _check_shape, _host

ArrayLike = Any
Score = Callable[[jax.Array, jax.Array], jax.Array]


def max_entropy(key: jax.Array, sample_probs: ArrayLike) -> jax.Array:
  """Predictive entropy ``H[mean_s p_s]`` (Shannon 1948)."""
  del key
  return uncertainty.predictive_entropy(sample_probs)


def bald(key: jax.Array, sample_probs: ArrayLike) -> jax.Array:
  """Mutual information between the prediction and the weights (Houlsby et al. 2011)."""
  del key
  return uncertainty.mutual_information(sample_probs)


def variation_ratios(key: jax.Array, sample_probs: ArrayLike) -> jax.Array:
  """``1 - (votes for the modal class) / S``: disagreement of the samples' argmaxes."""
  del key
  return uncertainty.variation_ratio(sample_probs)


def mean_std(key: jax.Array, sample_probs: ArrayLike) -> jax.Array:
  """Mean over classes of the std over samples of ``p(y = c | x, w_s)`` (Kampffmeyer 2016)."""
  del key
  sample_probs = jnp.asarray(uncertainty._check_sample_probs(sample_probs))
  # Two passes: E[p^2] - E[p]^2 cancels to float32 noise when the samples agree.
  return jnp.mean(jnp.std(sample_probs, axis=0), -1)


def random_scores(key: jax.Array, sample_probs: ArrayLike) -> jax.Array:
  """Uniform noise: acquisition uniformly at random from the pool (the baseline).

  Only the shape of `sample_probs` ``(S, N, C)`` is read (and checked).
  """
  _check_shape(_array(sample_probs, "sample_probs"), "sample_probs",
               "(S, N, C) (samples, examples, classes)", ndim=3)
  return jax.random.uniform(key, jnp.shape(sample_probs)[1:2])


ACQUISITION_FUNCTIONS: dict[str, Score] = {
    "bald": bald,
    "variation_ratios": variation_ratios,
    "max_entropy": max_entropy,
    "mean_std": mean_std,
    "random": random_scores,
}


def acquisition_score(name: str) -> Score:
  """The scoring function called ``name``: one of `ACQUISITION_FUNCTIONS`."""
  if name not in ACQUISITION_FUNCTIONS:
    raise ValueError(
        f"acquisition function must be one of {sorted(ACQUISITION_FUNCTIONS)}; got {name!r}.")
  return ACQUISITION_FUNCTIONS[name]


def select_top(scores: ArrayLike, available: ArrayLike, count: int) -> jax.Array:
  """Indices of the ``count`` highest scores among ``available`` examples (lowest index first
  on ties).

  Args:
    scores: ``(N,)`` finite acquisition scores.
    available: ``(N,)`` booleans (or 0/1); unavailable examples are never chosen.
    count: how many to choose: a positive int, at most the number available (checked
      when `available` is concrete; under jit an excess picks unavailable examples).

  Returns:
    ``(count,)`` int32 indices, best first.

  Example:
    >>> import jax.numpy as jnp
    >>> select_top(jnp.array([0.1, 0.9, 0.5, 0.7]), jnp.array([True, False, True, True]), 2)
    Array([3, 2], dtype=int32)
  """
  _check_selection(scores, available, count)
  scores = jnp.where(jnp.asarray(available), jnp.asarray(scores, jnp.float32), -jnp.inf)
  return jax.lax.top_k(scores, count)[1].astype(jnp.int32)


def _check_selection(scores: ArrayLike, available: ArrayLike, count: int) -> None:
  count = _check_count(count, "count")
  scores = _array(scores, "scores")
  available = _array(available, "available")
  _check_shape(scores, "scores", "(N,) (one score per pool example)", ndim=1)
  if tuple(available.shape) != tuple(scores.shape):
    raise ValueError(
        f"`available` must have the shape of `scores`, {tuple(scores.shape)}; got shape "
        f"{tuple(available.shape)}.")
  if count > scores.shape[0]:
    raise ValueError(
        f"`count` must be at most the number of examples N = {scores.shape[0]}; got {count}.")
  # A -inf or NaN score would tie with (or beat) the -inf given to unavailable examples.
  _check_finite(scores, "scores")
  host = _host(available)
  if host is None:
    return
  if not np.all((host == 0) | (host == 1)):
    raise ValueError(f"`available` must be booleans or 0/1; got values {np.unique(host)[:5]}.")
  if count > np.count_nonzero(host):
    raise ValueError(
        f"`count` must be at most the number of available examples "
        f"({np.count_nonzero(host)} of {host.size}); got {count}.")
