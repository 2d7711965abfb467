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
fewest bits that represent it to a relative error of at most 1e-3 of ``min(rate, 1 - rate)``
(0.5 and 0.25 use 8 bits exactly; 0.1 uses 16 bits and is drawn as 6554/65536 = 0.100006;
0.001 uses 32 bits). A traced rate uses 16 bits (resolution 1.5e-5). The PRNG
implementation (threefry, rbg, unsafe_rbg) is the caller's key's.

Fewer bits are asked for explicitly: ``bits=1`` draws rate 0.5 exactly from one random bit
per element, ``bits=2`` rates 0.25 and 0.75, ``bits=4`` multiples of 1/16 (a rate between
the steps is rounded to the nearest, as always: ``bits=1`` turns 0.3 into 0.5). The
automatic choice does not pick them, because a mask depends on the lane width, and the
committed results were drawn with the automatic widths.

The threshold is not differentiable; the rate keeps a straight-through gradient
(``dq/drate = -1``) so that the pathwise derivative of ``x * m / q`` is ``x * m / q**2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from dropjax._validation import concrete_value

ALLOWED_BITS = (1, 2, 4, 8, 16, 32)
# The automatic choice starts here; 1-, 2- and 4-bit lanes are asked for with `bits`.
_AUTO_BITS = (8, 16)
TRACED_RATE_BITS = 16
_RELATIVE_RATE_TOLERANCE = 1e-3
# Largest float32 below 2**32: the threshold must fit a uint32 after conversion.
_MAX_THRESHOLD_32 = float(np.nextafter(np.float32(2.0**32), np.float32(0)))

ArrayLike = Any


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
  tolerance = _RELATIVE_RATE_TOLERANCE * np.minimum(value, 1.0 - value)
  for width in _AUTO_BITS:
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
