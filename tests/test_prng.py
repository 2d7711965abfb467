"""The keyed-hash PRNG (dropjax.prng): its bits against an independent NumPy version, their
statistics (fixed keys, millions of words, 5 s.e. or 5 standard deviations of a
chi-square) and purity (jit, vmap, prefixes, shardings). Its errors are rows of the
bad-input table (bad_inputs_ops.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dropjax import prng
from tests.simulated_devices import run_on_simulated_devices

KEY = prng.key(7, "keyed_hash")
N = 1 << 22
Z = 5.0


def words(key, n=N):
  return np.asarray(jax.random.bits(key, (n,), jnp.uint32))


def numpy_hash32(x):
  x = x.astype(np.uint64)
  mask = np.uint64(0xFFFFFFFF)
  x ^= x >> np.uint64(16)
  x = (x * np.uint64(0x21F0AAAD)) & mask
  x ^= x >> np.uint64(15)
  x = (x * np.uint64(0xD35A2D97)) & mask
  x ^= x >> np.uint64(15)
  return x


def assert_chi_square_uniform(counts):
  """Counts of equally likely cells: chi-square within 5 of its standard deviations."""
  counts = np.asarray(counts, np.float64)
  expected = counts.sum() / counts.size
  chi2 = float(((counts - expected) ** 2 / expected).sum())
  df = counts.size - 1
  assert abs(chi2 - df) <= Z * np.sqrt(2 * df), (chi2, df)


def test_bits_match_an_independent_numpy_implementation():
  key_words = np.asarray(jax.random.key_data(KEY))
  s = np.asarray(jax.extend.random.threefry_2x32(jnp.asarray(key_words),
                                                 jnp.arange(4, dtype=jnp.uint32)))
  s = s.astype(np.uint64)
  mask = np.uint64(0xFFFFFFFF)
  index = np.arange(1000, dtype=np.uint64)
  x = numpy_hash32((index + s[0]) & mask)
  x = numpy_hash32(x ^ s[1])
  x = numpy_hash32((x + s[2]) & mask) ^ s[3]
  np.testing.assert_array_equal(words(KEY, 1000), x.astype(np.uint32))


def test_hash32_is_a_bijection_on_a_block_of_inputs():
  out = np.asarray(prng.hash32(jnp.arange(1 << 20, dtype=jnp.uint32)))
  assert np.unique(out).size == out.size


def test_keys_are_threefrys():
  threefry = jax.random.key(7)
  for derive in (lambda k: jax.random.split(k, 3), lambda k: jax.random.fold_in(k, 11),
                 lambda k: k):
    np.testing.assert_array_equal(jax.random.key_data(derive(KEY)),
                                  jax.random.key_data(derive(threefry)))
  assert not np.array_equal(words(KEY, 64), words(threefry, 64))


def test_every_bit_position_is_fair():
  w = words(KEY)
  ones = np.array([((w >> b) & 1).mean() for b in range(32)])
  assert np.all(np.abs(ones - 0.5) <= Z * np.sqrt(0.25 / N)), ones


@pytest.mark.parametrize("dtype", [jnp.uint8, jnp.uint16])
def test_narrow_draws_are_uniform(dtype):
  values = np.asarray(jax.random.bits(KEY, (N + 3,), dtype)).astype(np.int64)
  assert_chi_square_uniform(np.bincount(values, minlength=np.iinfo(dtype).max + 1))


@pytest.mark.parametrize("lag", [1, 2, 3, 32, 4096])
def test_neighbouring_words_are_independent(lag):
  w = words(KEY)
  for shift in (0, 28):  # the low and the high nibble
    nib = ((w >> shift) & 15).astype(np.int64)
    assert_chi_square_uniform(np.bincount(nib[:-lag] * 16 + nib[lag:], minlength=256))


def test_streams_of_related_keys_are_independent():
  """Word i of one stream against word i of another: seeds one bit apart, split keys,
  keys folded with consecutive integers."""
  split = jax.random.split(KEY, 2)
  pairs = [(prng.key(0, "keyed_hash"), prng.key(1, "keyed_hash")), (split[0], split[1]),
           (jax.random.fold_in(KEY, 0), jax.random.fold_in(KEY, 1))]
  for a, b in pairs:
    wa, wb = words(a), words(b)
    for shift in (0, 28):
      na, nb = ((wa >> shift) & 15).astype(np.int64), ((wb >> shift) & 15).astype(np.int64)
      assert_chi_square_uniform(np.bincount(na * 16 + nb, minlength=256))
    # Matching bits: each position agrees with probability 1/2.
    agree = np.unpackbits((~(wa ^ wb)).view(np.uint8)).mean()
    assert abs(agree - 0.5) <= Z * np.sqrt(0.25 / (32 * N))


def test_draws_are_pure_functions_of_key_and_index():
  eager = words(KEY, 1000)
  np.testing.assert_array_equal(jax.jit(lambda k: jax.random.bits(k, (1000,)))(KEY), eager)
  # A longer draw starts with the shorter one (words are indexed by position)...
  np.testing.assert_array_equal(words(KEY, 5000)[:1000], eager)
  # ...and vmapping over keys draws what each key draws alone.
  keys = jax.random.split(KEY, 3)
  batched = jax.vmap(lambda k: jax.random.bits(k, (10, 7), jnp.uint16))(keys)
  for i in range(3):
    np.testing.assert_array_equal(batched[i], jax.random.bits(keys[i], (10, 7), jnp.uint16))
  assert jax.random.bits(KEY, (2, 3), jnp.uint8).shape == (2, 3)
  assert jax.random.uniform(KEY, (5,)).dtype == jnp.float32


def test_a_sharded_draw_equals_the_single_device_draw():
  run_on_simulated_devices("""
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import dropjax
from dropjax import prng
key = prng.key(3, "keyed_hash")
x = jnp.ones((64, 40))
single = dropjax.dropout(key, x, 0.1)
mesh = Mesh(np.array(jax.devices()), ("d",))
sharding = NamedSharding(mesh, P("d"))
sharded = jax.jit(lambda k, x: dropjax.dropout(k, x, 0.1), out_shardings=sharding)(
    key, jax.device_put(x, sharding))
assert len(sharded.sharding.device_set) == 4
np.testing.assert_array_equal(np.asarray(sharded), np.asarray(single))
print("OK")
""")
