"""Bernoulli keep-masks drawn from as few random bits as the rate needs.

`jax.random.bernoulli` (and so `flax.nnx.Dropout`) draws a float32 uniform per element:
32 random bits, of which 23 are used. Generating random bits is the whole cost of a
dropout op on CPU and a large part on GPU, so here each element gets a *lane* of
``bits`` random bits (1, 2, 4, 8, 16 or 32) carved out of 32-bit words from `jax.random.bits`,
and an element is kept when its lane is at or above an integer threshold
``t = round(rate * 2**bits)``. The realised keep probability is therefore

    q = 1 - t / 2**bits,

a multiple of ``2**-bits``. Ops scale by ``1 / q`` (the realised value, not ``1 - rate``),
so ``E[y] = x`` holds exactly whatever the resolution.

Resolution, when the caller does not pick ``bits``: for a rate known at trace time, the
fewest bits that hold it exactly among 1, 2 and 4 (0.5 from one random bit per element,
0.25 and 0.75 from 2, multiples of 1/16 from 4), else the fewest of 8 and 16 that represent
it to a relative error of at most 1e-3 of ``min(rate, 1 - rate)`` (0.1 uses 16 bits and is
drawn as 6554/65536 = 0.100006), else 32 (0.001). A traced rate uses 16 bits (resolution
1.5e-5). `automatic_min_bits` raises the narrowest automatic width (8 gives the masks of
dropjax before 1-, 2- and 4-bit lanes). The PRNG implementation (threefry, rbg, unsafe_rbg,
or `dropjax.prng.KEYED_HASH`, several times cheaper on CPU) is the caller's key's. An
explicit ``bits`` rounds any rate to its grid (``bits=1`` turns
0.3 into 0.5).

The threshold is not differentiable; the rate keeps a straight-through gradient
(``dq/drate = -1``) so that the pathwise derivative of ``x * m / q`` is ``x * m / q**2``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from dropjax._validation import concrete_value

ALLOWED_BITS = (1, 2, 4, 8, 16, 32)
# Widths the automatic choice takes only when they hold the rate exactly.
_EXACT_BITS = (1, 2, 4)
# Widths it takes when they hold the rate to the relative tolerance.
_TOLERANT_BITS = (8, 16)
AUTOMATIC_MIN_BITS = (1, 2, 4, 8)
TRACED_RATE_BITS = 16
# Part of jax.jit's cache key: a function traced under one floor is traced again under
# another, so a cached program never carries the other floor's masks.
_MIN_BITS = jax.make_user_context(default_value=1)
_RELATIVE_RATE_TOLERANCE = 1e-3
# Largest float32 below 2**32: the threshold must fit a uint32 after conversion.
_MAX_THRESHOLD_32 = float(np.nextafter(np.float32(2.0**32), np.float32(0)))

ArrayLike = Any


def automatic_min_bits(bits: int) -> contextlib.AbstractContextManager:
  """Within this context, the automatic lane width is at least ``bits``.

  ``automatic_min_bits(8)`` draws the masks dropjax drew before 1-, 2- and 4-bit lanes
  (rate 0.5 from 8 bits): the studies pin it (``config.mask_min_bits``) so that their
  committed results stay reproducible. The floor is part of `jax.jit`'s cache key, so a
  function traced under one floor is traced again under another. Explicit ``bits`` and
  traced rates (16 bits) are not affected.

  Args:
    bits: one of 1 (the default outside any context), 2, 4, 8.

  Returns:
    A context manager.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from dropjax import masks
    >>> masks.resolve_bits(0.5, None)
    1
    >>> with masks.automatic_min_bits(8):
    ...   masks.resolve_bits(0.5, None)
    8
  """
  if bits not in AUTOMATIC_MIN_BITS:
    raise ValueError(f"`bits` must be one of {AUTOMATIC_MIN_BITS} (the automatic choice's "
                     f"narrowest lane); got {bits!r}.")
  return _MIN_BITS(int(bits))


def resolve_bits(rate: ArrayLike, bits: int | None) -> int:
  """The lane width used for `rate`: `bits` if given, else the fewest that represent it.

  Args:
    rate: the drop probability (float, array, or traced value).
    bits: None for automatic, or one of 1, 2, 4, 8, 16, 32.

  Returns:
    The number of random bits per element.
  """
  if bits is not None:
    if bits not in ALLOWED_BITS:
      raise ValueError(f"`bits` must be one of {ALLOWED_BITS} or None (automatic); got {bits!r}.")
    return int(bits)
  value = concrete_value(rate)
  if value is None:
    return TRACED_RATE_BITS
  floor = _MIN_BITS.value
  for width in _EXACT_BITS:
    steps = value * 2.0**width
    if width >= floor and np.all(steps == np.round(steps)):
      return width
  tolerance = _RELATIVE_RATE_TOLERANCE * np.minimum(value, 1.0 - value)
  for width in _TOLERANT_BITS:
    quantised = np.round(value * 2.0**width) / 2.0**width
    if np.all(np.abs(quantised - value) <= tolerance):
      return width
  return 32


def _threshold(rate: ArrayLike, bits: int) -> jax.Array:
  t = jnp.round(jnp.asarray(rate, jnp.float32) * jnp.float32(2.0**bits))
  if bits == 32:
    t = jnp.clip(t, 0.0, _MAX_THRESHOLD_32)
  return t


def keep_probability(rate: ArrayLike, bits: int) -> jax.Array:
  """Realised keep probability ``1 - round(rate * 2**bits) / 2**bits`` (float32).

  Carries a straight-through gradient with respect to `rate`.
  """
  rate = jnp.asarray(rate, jnp.float32)
  quantised = 1.0 - _threshold(rate, bits) / jnp.float32(2.0**bits)
  if bits == 32:
    # The clipped threshold never reaches 2**32; rate 1 must still keep nothing.
    quantised = jnp.where(rate >= 1.0, 0.0, quantised)
  return (1.0 - rate) + lax.stop_gradient(quantised - (1.0 - rate))


def random_lanes(key: jax.Array, shape: Sequence[int], bits: int) -> jax.Array:
  """Uniform random unsigned integers of `bits` bits, one per element of `shape`.

  Draws ``ceil(size * bits / 32)`` 32-bit words and splits each into ``32 // bits``
  lanes; every bit of a threefry/rbg word is uniform and independent, so are the lanes.
  8- and 16-bit lanes are bit-casts of the words. 1-, 2- and 4-bit lanes are shifted out
  of them, lane ``j`` of every word in turn: element ``i`` is bits ``[j * bits, (j + 1) *
  bits)`` of word ``i mod W`` with ``j = i div W``, so that consecutive elements read
  consecutive words (contiguous, vectorisable loads). They come as uint8.
  """
  shape = tuple(int(d) for d in shape)
  if bits == 32:
    return jax.random.bits(key, shape, jnp.uint32)
  size = int(np.prod(shape, dtype=np.int64))
  lanes_per_word = 32 // bits
  n_words = -(-size // lanes_per_word)
  words = jax.random.bits(key, (n_words,), jnp.uint32)
  if bits < 8:
    shifts = jnp.arange(0, 32, bits, dtype=jnp.uint32)[:, None]
    lanes = ((words[None, :] >> shifts) & jnp.uint32(2**bits - 1)).astype(jnp.uint8)
    lanes = lanes.reshape(-1)
  else:
    lane_dtype = jnp.uint8 if bits == 8 else jnp.uint16
    lanes = lax.bitcast_convert_type(words, lane_dtype).reshape(-1)
  if lanes.shape[0] != size:
    lanes = lanes[:size]
  return lanes.reshape(shape)


def bernoulli_keep(
    key: jax.Array, shape: Sequence[int], rate: ArrayLike, bits: int
) -> jax.Array:
  """Boolean keep-mask with ``P(keep) = keep_probability(rate, bits)`` per element."""
  lanes = random_lanes(key, shape, bits)
  t = _threshold(rate, bits)
  if bits == 32:
    return lanes >= t.astype(jnp.uint32)
  # The threshold can be 2**bits (rate 1), which does not fit the lane type.
  return lanes.astype(jnp.int32) >= t.astype(jnp.int32)


def safe_reciprocal(q: jax.Array) -> jax.Array:
  """``1 / q`` where ``q > 0`` and 0 elsewhere, with finite gradients everywhere."""
  positive = q > 0
  return jnp.where(positive, 1.0 / jnp.where(positive, q, 1.0), 0.0)
