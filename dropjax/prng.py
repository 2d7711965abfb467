"""A counter-based PRNG for masks: threefry keys, random bits from a keyed integer hash.

On CPU, drawing random bits is most of a dropout op's cost: JAX's default threefry2x32
spends 20 rounds per pair of 32-bit words (`docs/performance.md`). `KEYED_HASH` is a JAX
PRNG implementation (`jax.extend.random.define_prng_impl`) that keeps threefry for
everything done to keys (`seed`, `split`, `fold_in`: the same key tree as
``jax.random.key(seed)``) and replaces only the bits. For a key with data ``k``:

1. one threefry block turns ``k`` into four 32-bit words ``s0..s3``, so that keys that
   differ in one bit (seeds 0 and 1) hash with unrelated words;
2. word ``i`` of a draw is ``h(h(h(i + s0) ^ s1) + s2) ^ s3``, where ``h`` is a bijective
   32-bit integer hash with two multiplies (the low-bias hash found by Wellons' hash
   prospector: shifts 16, 15, 15, multipliers 0x21f0aaad and 0xd35a2d97).

Each word is a function of (key, index) alone, as for threefry: masks do not depend on
chunking, vmapping or the device count, and a jitted draw is the same as an eager one. For
a fixed key, the words of one draw are a keyed permutation of the indices (no two equal),
which matters only for draws near 2**32 words; more than 2**32 words per draw are refused.

Use it by making keys with it; every op that takes the key then draws its bits from it:

    >>> import jax, jax.numpy as jnp
    >>> import dropjax
    >>> from dropjax import prng
    >>> key = jax.random.key(0, impl=prng.KEYED_HASH)
    >>> y = dropjax.dropout(key, jnp.ones((4, 8)), 0.5)
    >>> y.shape
    (4, 8)

It is a different generator: every mask, initialisation and sample drawn with its keys
differs from threefry's. Its statistical checks (uniform bits and lanes, no correlation
between neighbouring words or between the streams of split and folded keys) are in
``tests/test_prng.py``; every mask width's tests run with it too.

References:
  Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC 2011
  (counter-based generators: the bits of element i are a keyed bijection of i).
  Wellons, "Prospecting for hash functions" (2018) and github.com/skeeto/hash-prospector
  (the 32-bit hash ``h`` and its measured bias).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.extend.random as jex_random
import jax.numpy as jnp
from jax import lax

__all__ = ["IMPLS", "KEYED_HASH", "hash32", "key", "keyed_hash_words"]

_THREEFRY = jex_random.threefry_prng_impl
_MAX_WORDS = 2**32


def hash32(x: jax.Array) -> jax.Array:
  """The bijective 32-bit integer hash ``h`` (uint32 in, uint32 out, elementwise).

  Args:
    x: a uint32 array.

  Returns:
    ``h(x)``, a uint32 array of the same shape.
  """
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x21F0AAAD)
  x = x ^ (x >> 15)
  x = x * jnp.uint32(0xD35A2D97)
  return x ^ (x >> 15)


def keyed_hash_words(key_data: jax.Array, num_words: int) -> jax.Array:
  """``num_words`` uint32 words of the keyed hash for threefry key data ``key_data``.

  Args:
    key_data: uint32[2], a threefry key's data (``jax.random.key_data``).
    num_words: how many words (at most 2**32).

  Returns:
    uint32[num_words]: word i is ``h(h(h(i + s0) ^ s1) + s2) ^ s3``.
  """
  if not 0 <= num_words <= _MAX_WORDS:
    raise ValueError(
        f"num_words must be in [0, 2**32] for the keyed-hash PRNG (its counter is 32 "
        f"bits); got {num_words}. Split the key and draw in parts.")
  s = jex_random.threefry_2x32(key_data, jnp.arange(4, dtype=jnp.uint32))

  def round_(r, x):  # rounds 0 and 2 add their key word, round 1 xors it
    return hash32(jnp.where(r % 2 == 0, x + s[r], x ^ s[r]))

  # uint32 iota: 2**32 words would overflow an int32 one. The rounds are a loop, as
  # threefry's are, so that XLA materialises the words: fused into a consumer that reads
  # each word several times (1-bit lanes: 32), the hash would be recomputed for each read.
  x = lax.fori_loop(0, 3, round_, lax.iota(jnp.uint32, num_words))
  return x ^ s[3]


def _random_bits(key_data: jax.Array, bit_width: int, shape: Sequence[int]) -> jax.Array:
  if bit_width not in (8, 16, 32, 64):
    raise TypeError(f"bit_width must be 8, 16, 32 or 64; got {bit_width}.")
  shape = tuple(int(d) for d in shape)
  size = math.prod(shape)
  words = keyed_hash_words(key_data, -(-size * bit_width // 32))
  if bit_width == 32:
    return words.reshape(shape)
  if bit_width == 64:
    # bitcast pairs (uint32[n, 2] -> uint64[n]); needs jax_enable_x64 like threefry's.
    return lax.bitcast_convert_type(words.reshape(size, 2), jnp.uint64).reshape(shape)
  lanes = lax.bitcast_convert_type(words, jnp.dtype(f"uint{bit_width}")).reshape(-1)
  return lanes[:size].reshape(shape)


KEYED_HASH = jex_random.define_prng_impl(
    key_shape=_THREEFRY.key_shape, seed=_THREEFRY.seed, split=_THREEFRY.split,
    fold_in=_THREEFRY.fold_in, random_bits=_random_bits, name="keyed_hash", tag="kh")

# The generators a config may name (`key`): JAX's default, and this module's.
IMPLS = {"threefry2x32": "threefry2x32", "keyed_hash": KEYED_HASH}


def key(seed: int | jax.Array, impl: str = "threefry2x32") -> jax.Array:
  """``jax.random.key(seed)`` with the generator named ``impl``.

  Args:
    seed: the seed (an int or a scalar integer array).
    impl: ``"threefry2x32"`` (JAX's default) or ``"keyed_hash"`` (`KEYED_HASH`).

  Returns:
    A typed key. Both generators derive the same keys from a seed (the same ``split``
    and ``fold_in``); only the random bits drawn with them differ.

  Raises:
    ValueError: an unknown ``impl``.
  """
  if impl not in IMPLS:
    raise ValueError(f"impl must be one of {sorted(IMPLS)} (the PRNG implementation); got "
                     f"{impl!r}.")
  return jax.random.key(seed, impl=IMPLS[impl])
