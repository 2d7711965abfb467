"""Monte-Carlo dropout: S stochastic forward passes, vmapped and chunked.

Sample ``i`` uses the key ``fold_in(key, i)``: it depends only on ``(key, i)``, never on
how the samples are chunked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from dropjax.layers import reseed, set_mc

Forward = Callable[[jax.Array, Any], Any]


def sample_keys(key: jax.Array, num_samples: int) -> jax.Array:
  """The per-sample keys ``fold_in(key, i)``, ``i = 0 .. num_samples - 1``."""
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(num_samples))


def mc_sample(
    forward: Forward,
    key: jax.Array,
    x: Any,
    num_samples: int,
    *,
    chunk_size: int | None = None,
) -> Any:
  """Stacks ``forward(fold_in(key, i), x)`` for ``i < num_samples`` along a new axis 0.

  Args:
    forward: a pure stochastic function ``(key, x) -> outputs`` (e.g. `module_forward`).
    key: a PRNG key.
    x: the inputs (any pytree), shared by every sample.
    num_samples: S.
    chunk_size: at most this many samples are vmapped at once (bounds memory); None
      vmaps all S.

  Returns:
    ``forward``'s outputs with a leading axis of size S.

  Example:
    >>> import jax, jax.numpy as jnp, dropjax
    >>> from dropjax.mc import mc_sample
    >>> f = lambda k, x: dropjax.dropout(k, x, 0.5)
    >>> mc_sample(f, jax.random.key(0), jnp.ones(3), 10, chunk_size=4).shape
    (10, 3)
  """
  if num_samples < 1:
    raise ValueError(f"`num_samples` must be positive; got {num_samples}.")
  if chunk_size is not None and chunk_size < 1:
    raise ValueError(f"`chunk_size` must be positive or None; got {chunk_size}.")
  keys = sample_keys(key, num_samples)
  if chunk_size is None or chunk_size >= num_samples:
    return jax.vmap(forward, in_axes=(0, None))(keys, x)
  return jax.lax.map(lambda k: forward(k, x), keys, batch_size=chunk_size)


def mc_predict(
    forward: Forward,
    key: jax.Array,
    x: Any,
    num_samples: int,
    *,
    chunk_size: int | None = None,
) -> jax.Array:
  """The MC-dropout predictive distribution: the mean of ``softmax(forward)`` over S samples.

  Args:
    forward: ``(key, x) -> logits`` with dropout sampling on.
    key: a PRNG key.
    x: the inputs.
    num_samples: S.
    chunk_size: samples vmapped at once; the result does not depend on it.

  Returns:
    Mean class probabilities, shaped like the logits.
  """
  probs = mc_sample(lambda k, x: jax.nn.softmax(forward(k, x)), key, x, num_samples,
                    chunk_size=chunk_size)
  return jnp.mean(probs, axis=0)


def module_forward(model: nnx.Module) -> Forward:
  """A pure ``(key, x) -> model(x)`` with dropout sampling on and everything else in eval mode.

  The model is put in ``eval()`` + MC mode on a copy; each call reseeds the copy's dropout
  layers from ``key`` (`dropjax.layers.reseed`), so the function can be vmapped over keys.
  """
  model = nnx.clone(model)
  model.eval()
  set_mc(model, raise_if_not_found=False)  # a model without dropout is its own MC mean
  graphdef, state = nnx.split(model)

  def forward(key, x):
    m = nnx.merge(graphdef, state, copy=True)
    reseed(m, key)
    return m(x)

  return forward
