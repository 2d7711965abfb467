"""Monte-Carlo dropout: S stochastic forward passes, vmapped and chunked.

Sample ``i`` uses the key ``fold_in(key, i)``: it depends only on ``(key, i)``, never on
how the samples are chunked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from dropjax.layers import reseed, set_mc

Forward = Callable[[jax.Array, Any], Any]


def sample_keys(key: jax.Array, num_samples: int) -> jax.Array:
  """The per-sample keys ``fold_in(key, i)``, ``i = 0 .. num_samples - 1``."""
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(num_samples))


def _local_samples(forward: Forward, keys: jax.Array, x: Any, chunk_size: int | None) -> Any:
  if chunk_size is None or chunk_size >= keys.shape[0]:
    return jax.vmap(forward, in_axes=(0, None))(keys, x)
  return jax.lax.map(lambda k: forward(k, x), keys, batch_size=chunk_size)


def mc_sample(
    forward: Forward,
    key: jax.Array,
    x: Any,
    num_samples: int,
    *,
    chunk_size: int | None = None,
    devices: Sequence[jax.Device] | None = None,
    prefix: Callable[[Any], Any] | None = None,
) -> Any:
  """Stacks ``forward(fold_in(key, i), x)`` for ``i < num_samples`` along a new axis 0.

  The deterministic part of the network before the first stochastic layer need not be
  computed S times. Without chunking, JAX's vmap batches only what depends on the keys, so
  that part is computed once automatically (``x`` is not batched). Inside a chunked loop
  that is up to XLA's loop-invariant hoisting. Pass it as ``prefix`` (and make ``forward``
  start after it) to have it computed exactly once before sampling, whatever the chunking.

  Args:
    forward: a pure stochastic function ``(key, x) -> outputs`` (e.g. `module_forward`).
    key: a PRNG key.
    x: the inputs (any pytree), shared by every sample.
    num_samples: S.
    chunk_size: at most this many samples are vmapped at once per device (bounds memory);
      None vmaps all of a device's samples at once.
    devices: shard the sample axis over these devices with `jax.shard_map` (None: no
      sharding). S is padded up to a multiple of the device count; the padding samples are
      computed and dropped.
    prefix: a deterministic ``x -> h`` applied once; ``forward`` then receives ``h``.

  Returns:
    ``forward``'s outputs with a leading axis of size S. Sample i's randomness depends
    only on ``(key, i)``, never on ``chunk_size`` or ``devices``.

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
  if prefix is not None:
    x = prefix(x)
  if not devices:
    return _local_samples(forward, sample_keys(key, num_samples), x, chunk_size)
  n_dev = len(devices)
  padded = -(-num_samples // n_dev) * n_dev
  mesh = Mesh(np.asarray(devices), ("samples",))
  sharded = jax.shard_map(
      lambda keys, x: _local_samples(forward, keys, x, chunk_size),
      mesh=mesh, in_specs=(P("samples"), P()), out_specs=P("samples"),
  )
  out = sharded(sample_keys(key, padded), x)
  return jax.tree.map(lambda a: a[:num_samples], out)


def mc_predict(
    forward: Forward,
    key: jax.Array,
    x: Any,
    num_samples: int,
    *,
    chunk_size: int | None = None,
    devices: Sequence[jax.Device] | None = None,
) -> jax.Array:
  """The MC-dropout predictive distribution: the mean of ``softmax(forward)`` over S samples.

  Args:
    forward: ``(key, x) -> logits`` with dropout sampling on.
    key: a PRNG key.
    x: the inputs.
    num_samples: S.
    chunk_size: samples vmapped at once per device.
    devices: shard the samples over these devices (see `mc_sample`).

  Returns:
    Mean class probabilities, shaped like the logits.
  """
  probs = mc_sample(lambda k, x: jax.nn.softmax(forward(k, x)), key, x, num_samples,
                    chunk_size=chunk_size, devices=devices)
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
