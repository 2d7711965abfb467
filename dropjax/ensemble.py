"""Dropout as an implicit ensemble: exact averages over every sub-network of a small net.

With ``n`` droppable units there are ``2**n`` sub-networks; mask ``m`` has probability
``q**|m| (1 - q)**(n - |m|)``. For networks small enough to enumerate, `exact_ensemble`
computes the arithmetic mean of the sub-networks' predictive distributions (what MC
dropout estimates), their normalised weighted geometric mean (NWGM), and compares both with
weight scaling (inference with the full network).

For a single softmax layer the NWGM equals weight scaling exactly (Baldi & Sadowski 2013;
Srivastava et al. 2014, sec. 7.5 and appendix); for deeper networks it is an approximation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class EnsembleAverages(NamedTuple):
  arithmetic: jax.Array  # sum_m P(m) softmax(f(m, x))
  geometric: jax.Array  # normalised exp(sum_m P(m) log softmax(f(m, x)))
  weight_scaling: jax.Array  # softmax(f_full(x))


def all_masks(num_units: int) -> np.ndarray:
  """Every binary keep-mask over ``num_units`` units, ``(2**n, n)`` float32."""
  if not 1 <= num_units <= 20:
    raise ValueError(f"`num_units` must be in [1, 20] to enumerate 2**n masks; got {num_units}.")
  codes = np.arange(2**num_units)[:, None]
  return ((codes >> np.arange(num_units)) & 1).astype(np.float32)


def mask_probabilities(masks: np.ndarray, keep_probability: float) -> np.ndarray:
  kept = masks.sum(1)
  n = masks.shape[1]
  return keep_probability**kept * (1.0 - keep_probability) ** (n - kept)


def exact_ensemble(
    logits_fn: Callable[[jax.Array, jax.Array], jax.Array],
    deterministic_logits: jax.Array,
    x: jax.Array,
    num_units: int,
    rate: float,
) -> EnsembleAverages:
  """Exact ensemble averages over all ``2**num_units`` dropout masks.

  Args:
    logits_fn: ``(scaled_mask, x) -> logits`` for one mask; the mask arrives already scaled
      by ``1/q`` (inverted dropout), so the full network is the inference network.
    deterministic_logits: the weight-scaling logits (the network without dropout).
    x: the inputs.
    num_units: the number of droppable units (at most 20).
    rate: the dropout rate.

  Returns:
    `EnsembleAverages` of class probabilities.
  """
  q = 1.0 - rate
  masks = all_masks(num_units)
  weights = jnp.asarray(mask_probabilities(masks, q))
  log_probs = jax.vmap(lambda m: jax.nn.log_softmax(logits_fn(jnp.asarray(m) / q, x)))(masks)
  arithmetic = jnp.einsum("m,m...->...", weights, jnp.exp(log_probs))
  geometric = jax.nn.softmax(jnp.einsum("m,m...->...", weights, log_probs), axis=-1)
  return EnsembleAverages(arithmetic, geometric, jax.nn.softmax(deterministic_logits, axis=-1))
