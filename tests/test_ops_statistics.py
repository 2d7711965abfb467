"""Statistical and structural properties of each op: fixed keys, large samples, 5 s.e."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dropjax
from dropjax import masks, prng

KEY = jax.random.key(2024)
# The mask tests that matter for the generator run with every one (dropjax.prng).
KEYS = {impl: prng.key(2024, impl) for impl in prng.IMPLS}
N = 1 << 22  # 4M draws: the s.e. of a rate near 0.5 is 2.4e-4.
Z = 5.0


def assert_rate(observed_fraction, p, n):
  se = np.sqrt(p * (1 - p) / n)
  assert abs(observed_fraction - p) <= Z * se, (observed_fraction, p, se)


def realised_rate(rate, bits):
  return 1.0 - float(masks.keep_probability(rate, bits))


# --- Resolution of the fast masks -------------------------------------------------------


@pytest.mark.parametrize(
    "rate, expected_bits, floored_8",
    [(0.5, 1, 8), (0.25, 2, 8), (0.75, 2, 8), (0.3125, 4, 8), (1 / 256, 8, 8), (0.1, 16, 16),
     (0.3, 16, 16), (0.005, 16, 16), (0.001, 32, 32)])
def test_automatic_bits_hold_the_rate_exactly_or_to_relative_1e_3(rate, expected_bits,
                                                                   floored_8):
  bits = masks.resolve_bits(rate, None)
  assert bits == expected_bits
  tolerance = 0.0 if bits < 8 else 1e-3 * min(rate, 1 - rate)
  assert abs(realised_rate(rate, bits) - rate) <= tolerance
  with masks.automatic_min_bits(8):  # the widths before 1-, 2- and 4-bit lanes
    assert masks.resolve_bits(rate, None) == floored_8


def test_the_automatic_floor_is_part_of_the_jit_cache_key():
  x = jnp.ones(4096)
  drop = jax.jit(lambda k, x: dropjax.dropout(k, x, 0.5))
  narrow = drop(KEY, x)
  with masks.automatic_min_bits(8):
    floored = drop(KEY, x)  # traced again, not the cached 1-bit program
  np.testing.assert_array_equal(narrow, dropjax.dropout(KEY, x, 0.5, bits=1))
  np.testing.assert_array_equal(floored, dropjax.dropout(KEY, x, 0.5, bits=8))
  assert not bool(jnp.all(narrow == floored))
  np.testing.assert_array_equal(drop(KEY, x), narrow)
  with pytest.raises(ValueError, match=r"`bits` must be one of \(1, 2, 4, 8\)"):
    masks.automatic_min_bits(16)


def test_traced_rate_uses_16_bits_and_bad_bits_are_rejected():
  assert jax.jit(lambda r: jnp.float32(masks.resolve_bits(r, None)))(0.1) == 16
  with pytest.raises(ValueError, match="`bits` must be one of"):
    dropjax.dropout(KEY, jnp.ones(3), 0.5, bits=12)


@pytest.mark.parametrize("impl", sorted(KEYS))
@pytest.mark.parametrize("rate", [0.1, 0.5, 0.005, 0.9])
@pytest.mark.parametrize("bits", [None, 8, 16, 32])
def test_realised_drop_fraction_and_expectation(rate, bits, impl):
  y = dropjax.dropout(KEYS[impl], jnp.ones(N), rate, bits=bits)
  resolved = masks.resolve_bits(rate, bits)
  q = 1.0 - realised_rate(rate, resolved)
  dropped = float(jnp.mean(y == 0))
  # The mask is Bernoulli at the quantised rate...
  assert_rate(dropped, 1 - q, N)
  # ...and E[y] = x exactly, because kept values are scaled by 1/q, not 1/(1 - rate).
  mean, se = float(jnp.mean(y)), np.sqrt((1 - q) / q / N)
  assert abs(mean - 1.0) <= Z * se
  if bits is None:
    assert_rate(dropped, rate, N)  # automatic resolution is finer than the test can see


@pytest.mark.parametrize("bits, rates", [(1, [0.5]), (2, [0.25, 0.5, 0.75]),
                                         (4, [1 / 16, 0.3125, 0.5, 15 / 16])])
@pytest.mark.parametrize("impl", sorted(KEYS))
def test_narrow_lanes_draw_their_exact_rates_with_the_right_expectation(bits, rates, impl):
  # An odd size: the last word is only partly used.
  n = N + 7
  for rate in rates:
    assert realised_rate(rate, bits) == rate  # exact at this width
    y = dropjax.dropout(jax.random.fold_in(KEYS[impl], bits), jnp.ones(n), rate, bits=bits)
    assert_rate(float(jnp.mean(y == 0)), rate, n)
    assert abs(float(jnp.mean(y)) - 1.0) <= Z * np.sqrt(rate / (1 - rate) / n)


@pytest.mark.parametrize("impl", sorted(KEYS))
@pytest.mark.parametrize("bits", [1, 2, 4])
def test_narrow_lanes_are_uniform_and_neighbours_independent(bits, impl):
  lanes = np.asarray(masks.random_lanes(KEYS[impl], (N + 5,), bits)).astype(np.int64)
  values = 2**bits
  assert lanes.max() == values - 1 and lanes.min() == 0
  # Every value with probability 2**-bits...
  counts = np.bincount(lanes, minlength=values)
  for count in counts:
    assert_rate(count / lanes.size, 1 / values, lanes.size)
  # ...and every pair with 2**-2bits: neighbours (the next word's lane) and the next lane
  # of the same word (W words apart).
  words = -(-lanes.size // (32 // bits))
  for lag in (1, words):
    pairs = lanes[:-lag] * values + lanes[lag:]
    pair_counts = np.bincount(pairs, minlength=values**2)
    for count in pair_counts:
      assert_rate(count / pairs.size, 1 / values**2, pairs.size)


def test_one_bit_masks_share_along_broadcast_dims_and_follow_the_key():
  x = jnp.ones((64, 10, 32))
  y = dropjax.dropout(KEY, x, 0.5, broadcast_dims=(1,), bits=1)
  np.testing.assert_array_equal(y, jnp.broadcast_to(y[:, :1], y.shape))
  assert_rate(float(jnp.mean(y[:, 0] == 0)), 0.5, 64 * 32)
  other = dropjax.dropout(jax.random.fold_in(KEY, 1), x, 0.5, broadcast_dims=(1,), bits=1)
  assert not bool(jnp.all(other == y))
  # jit, vmap over keys and a traced rate give the same masks as the eager call.
  jitted = jax.jit(lambda k, x, r: dropjax.dropout(k, x, r, broadcast_dims=(1,), bits=1))
  np.testing.assert_array_equal(jitted(KEY, x, 0.5), y)
  keys = jnp.stack([KEY, jax.random.fold_in(KEY, 1)])
  both = jax.vmap(lambda k: dropjax.dropout(k, x, 0.5, broadcast_dims=(1,), bits=1))(keys)
  np.testing.assert_array_equal(both[0], y)
  np.testing.assert_array_equal(both[1], other)


@pytest.mark.parametrize("impl", sorted(KEYS))
def test_expectation_per_element_over_keys(impl):
  x = jnp.linspace(-3.0, 3.0, 64)
  keys = jax.random.split(KEYS[impl], 20000)
  ys = jax.vmap(lambda k: dropjax.dropout(k, x, 0.3))(keys)
  mean = ys.mean(0)
  se = jnp.abs(x) * np.sqrt(0.3 / 0.7 / len(keys))
  assert bool(jnp.all(jnp.abs(mean - x) <= Z * se + 1e-6))


def test_broadcast_dims_share_the_mask():
  y = dropjax.dropout(KEY, jnp.ones((64, 10, 32)), 0.5, broadcast_dims=(1,))
  np.testing.assert_array_equal(y, jnp.broadcast_to(y[:, :1], y.shape))
  assert_rate(float(jnp.mean(y[:, 0] == 0)), 0.5, 64 * 32)
  with pytest.raises(ValueError, match="`broadcast_dims` contains axis 3"):
    dropjax.dropout(KEY, jnp.ones((2, 3, 4)), 0.5, broadcast_dims=(3,))


def test_classic_scaling_matches_inverted_at_inference_and_in_expectation():
  x = jnp.full((N,), 2.0)
  classic_train = dropjax.dropout(KEY, x, 0.2, inverted=False)
  inverted_train = dropjax.dropout(KEY, x, 0.2)
  # Same mask; classic keeps values unscaled.
  np.testing.assert_array_equal(classic_train == 0, inverted_train == 0)
  assert set(np.unique(classic_train).tolist()) == {0.0, 2.0}
  q = 1.0 - realised_rate(0.2, masks.resolve_bits(0.2, None))
  classic_eval = dropjax.dropout(KEY, x, 0.2, inverted=False, deterministic=True)
  np.testing.assert_allclose(classic_eval, x * q, rtol=1e-7)
  se = 2.0 * np.sqrt(q * (1 - q) / N)
  assert abs(float(classic_train.mean()) - float(classic_eval[0])) <= Z * se
  # Dividing the classic net's inference output by q recovers the inverted net's.
  np.testing.assert_allclose(classic_eval / q, dropjax.dropout(KEY, x, 0.2, deterministic=True))


def test_rate_gradient_is_straight_through():
  x = jnp.ones(1000)
  # A traced rate defaults to 16 bits, a concrete 0.25 to 8: pin `bits` for the same mask.
  g = jax.grad(lambda r: dropjax.dropout(KEY, x, r, bits=16).sum())(0.25)
  y = dropjax.dropout(KEY, x, 0.25, bits=16)
  # d/dr [x m / (1 - r)] = x m / (1 - r)^2 for the sampled mask.
  np.testing.assert_allclose(g, float(y.sum()) / 0.75, rtol=1e-5)


def test_rate_array_per_feature():
  rates = jnp.array([0.1, 0.5, 0.9])
  y = dropjax.dropout(KEY, jnp.ones((N // 4, 3)), rates)
  for j, r in enumerate([0.1, 0.5, 0.9]):
    assert_rate(float(jnp.mean(y[:, j] == 0)), r, N // 4)


# --- Spatial, variational, drop-path ------------------------------------------------------


@pytest.mark.parametrize(
    "shape, channel_axis", [((64, 9, 16), -1), ((32, 5, 5, 16), -1), ((16, 3, 4, 4, 8), -1),
                            ((32, 16, 5, 5), 1)]
)
def test_spatial_dropout_drops_whole_channels(shape, channel_axis):
  y = dropjax.spatial_dropout(KEY, jnp.ones(shape), 0.5, channel_axis=channel_axis)
  c = channel_axis % len(shape)
  spatial = tuple(a for a in range(1, len(shape)) if a != c)
  per_map_min, per_map_max = y.min(axis=spatial), y.max(axis=spatial)
  np.testing.assert_array_equal(per_map_min, per_map_max)
  assert_rate(float(jnp.mean(per_map_min == 0)), 0.5, per_map_min.size)


def test_spatial_dropout_rank_and_axis_errors():
  with pytest.raises(ValueError, match="rank 3 or 4 or 5"):
    dropjax.spatial_dropout(KEY, jnp.ones((3, 8, 8)[1:]), 0.5)
  with pytest.raises(ValueError, match="rank 3 or 4 or 5"):
    dropjax.spatial_dropout(KEY, jnp.ones((2, 2, 2, 2, 2, 2)), 0.5)
  with pytest.raises(ValueError, match="`channel_axis` contains axis 4"):
    dropjax.spatial_dropout(KEY, jnp.ones((2, 4, 4, 3)), 0.5, channel_axis=4)
  with pytest.raises(ValueError, match="must differ"):
    dropjax.spatial_dropout(KEY, jnp.ones((2, 4, 4, 3)), 0.5, channel_axis=0)


def test_variational_dropout_is_constant_over_time_and_independent_over_sequences():
  y = dropjax.variational_dropout(KEY, jnp.ones((4096, 12, 8)), 0.4)
  np.testing.assert_array_equal(y, jnp.broadcast_to(y[:, :1], y.shape))
  assert_rate(float(jnp.mean(y[:, 0] == 0)), 0.4, 4096 * 8)


def test_dropout_mask_reproduces_dropout():
  x = jax.random.normal(KEY, (32, 16))
  mask = dropjax.dropout_mask(jax.random.key(5), x.shape, 0.3)
  np.testing.assert_allclose(x * mask, dropjax.dropout(jax.random.key(5), x, 0.3), rtol=1e-6)


def test_drop_path_drops_whole_examples():
  y = dropjax.drop_path(KEY, jnp.ones((100_000, 3, 2)), 0.2)
  per_example = y.reshape(y.shape[0], -1)
  np.testing.assert_array_equal(per_example.min(1), per_example.max(1))
  assert_rate(float(jnp.mean(per_example[:, 0] == 0)), 0.2, y.shape[0])
  assert abs(float(y.mean()) - 1.0) <= Z * np.sqrt(0.2 / 0.8 / y.shape[0])


def test_depth_rules():
  assert dropjax.drop_path_rates(5, 0.5) == (0.1, 0.2, 0.3, 0.4, 0.5)
  assert dropjax.per_depth_rates(1, 0.2, 0.4) == (0.4,)
  with pytest.raises(ValueError, match="`max_rate`"):
    dropjax.drop_path_rates(3, 1.5)
  with pytest.raises(ValueError, match="`num_blocks`"):
    dropjax.drop_path_rates(0, 0.5)


# --- DropConnect ------------------------------------------------------------------------


def test_dropconnect_masks_every_leaf_independently():
  params = {"kernel": jnp.ones((512, 512)), "bias": jnp.ones(512 * 64)}
  out = dropjax.dropconnect(KEY, params, 0.3)
  for leaf in jax.tree.leaves(out):
    assert_rate(float(jnp.mean(leaf == 0)), 0.3, leaf.size)
  assert not np.array_equal(out["kernel"].ravel()[:512] == 0, out["bias"][:512] == 0)


def test_dropconnect_dense_shared_and_per_example_masks():
  x = jnp.broadcast_to(jnp.eye(4)[0], (64, 4))  # identical examples
  kernel = jnp.ones((4, 256))
  shared = dropjax.dropconnect_dense(KEY, x, kernel, 0.5)
  per_example = dropjax.dropconnect_dense(KEY, x, kernel, 0.5, per_example=True)
  np.testing.assert_array_equal(shared, jnp.broadcast_to(shared[0], shared.shape))
  assert len({tuple(np.asarray(row == 0)) for row in per_example}) > 60
  assert_rate(float(jnp.mean(per_example == 0)), 0.5, per_example.size)
  np.testing.assert_array_equal(
      dropjax.dropconnect_dense(KEY, x, kernel, 0.5, deterministic=True), x @ kernel
  )


def test_dropconnect_dense_expectation():
  x = jax.random.normal(KEY, (3, 5))
  kernel = jax.random.normal(jax.random.key(1), (5, 2))
  keys = jax.random.split(KEY, 20000)
  ys = jax.vmap(lambda k: dropjax.dropconnect_dense(k, x, kernel, 0.4))(keys)
  se = ys.std(0) / np.sqrt(len(keys))
  assert bool(jnp.all(jnp.abs(ys.mean(0) - x @ kernel) <= Z * se))


# --- DropBlock --------------------------------------------------------------------------


def _is_union_of_full_blocks(dropped, block):
  """True if every dropped pixel lies in a block x block window that is entirely dropped."""
  h, w = dropped.shape
  covered = np.zeros_like(dropped)
  for i in range(h - block + 1):
    for j in range(w - block + 1):
      if dropped[i : i + block, j : j + block].all():
        covered[i : i + block, j : j + block] = True
  return np.array_equal(covered, dropped)


@pytest.mark.parametrize("shared", [True, False])
def test_dropblock_drops_contiguous_blocks_at_the_expected_fraction(shared):
  n, h, w, c, block, rate = 512, 12, 12, 4, 3, 0.15
  y = np.asarray(
      dropjax.dropblock(KEY, jnp.ones((n, h, w, c)), rate, block_size=block,
                        shared_across_channels=shared)
  )
  dropped = y == 0
  if shared:
    np.testing.assert_array_equal(dropped, np.repeat(dropped[..., :1], c, axis=-1))
  else:
    assert not np.array_equal(dropped[..., 0], dropped[..., 1])
  for e in range(16):
    assert _is_union_of_full_blocks(dropped[e, :, :, 0], block)
  expected = dropjax.dropblock_expected_drop_fraction(rate, h, w, block)
  maps = dropped[..., :1] if shared else dropped
  per_map = maps.mean(axis=(1, 2)).ravel()
  se = per_map.std() / np.sqrt(per_map.size)
  assert abs(per_map.mean() - expected) <= Z * se
  # The paper's gamma targets `rate`; block overlaps leave the realised fraction close below.
  assert 0.85 * rate <= expected <= rate
  # Normalised by the realised keep fraction of the whole mask.
  np.testing.assert_allclose(y.sum(), y.size, rtol=1e-5)


def test_dropblock_errors():
  with pytest.raises(ValueError, match="`block_size`=9 is larger than the 8x8 feature map"):
    dropjax.dropblock(KEY, jnp.ones((1, 8, 8, 2)), 0.1, block_size=9)
  with pytest.raises(ValueError, match="rank 4"):
    dropjax.dropblock(KEY, jnp.ones((8, 8, 2)), 0.1, block_size=3)
  with pytest.raises(ValueError, match="`data_format`"):
    dropjax.dropblock(KEY, jnp.ones((1, 8, 8, 2)), 0.1, block_size=3, data_format="HWC")


def test_dropblock_nchw_matches_nhwc():
  x = jax.random.normal(KEY, (2, 10, 10, 3))
  nhwc = dropjax.dropblock(KEY, x, 0.2, block_size=3)
  nchw = dropjax.dropblock(KEY, x.transpose(0, 3, 1, 2), 0.2, block_size=3, data_format="NCHW")
  np.testing.assert_array_equal(nchw, nhwc.transpose(0, 3, 1, 2))


# --- Gaussian and alpha dropout -------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_gaussian_dropout_mean_and_variance(rate):
  y = np.asarray(dropjax.gaussian_dropout(KEY, jnp.ones(N), rate), np.float64)
  var = rate / (1 - rate)
  assert abs(y.mean() - 1.0) <= Z * np.sqrt(var / N)
  assert abs(y.var() - var) <= Z * var * np.sqrt(2.0 / N)


@pytest.mark.parametrize("rate", [0.05, 0.2, 0.5])
def test_alpha_dropout_keeps_zero_mean_unit_variance(rate):
  x = jax.random.normal(jax.random.key(9), (N,))
  y = np.asarray(dropjax.alpha_dropout(KEY, x, rate), np.float64)
  assert abs(y.mean()) <= Z / np.sqrt(N)
  centred = (y - y.mean()) ** 2
  assert abs(centred.mean() - 1.0) <= Z * centred.std() / np.sqrt(N)
  dropped_value = -1.7580993408473766
  q = float(masks.keep_probability(rate, masks.resolve_bits(rate, None)))
  a = (q + dropped_value**2 * q * (1 - q)) ** -0.5
  constant = a * dropped_value - a * (1 - q) * dropped_value
  assert_rate(float(np.mean(np.isclose(y, constant, rtol=0, atol=1e-6))), 1 - q, N)


def test_dropblock_default_draws_one_mask_per_channel_as_in_the_paper():
  y = dropjax.dropblock(KEY, jnp.ones((4, 12, 12, 8)), 0.3, block_size=3)
  dropped = y == 0
  # Per-channel masks: some position is dropped in one channel and kept in another.
  assert bool(jnp.any(dropped.any(-1) & ~dropped.all(-1)))
  shared = dropjax.dropblock(KEY, jnp.ones((4, 12, 12, 8)), 0.3, block_size=3,
                             shared_across_channels=True) == 0
  assert bool(jnp.all(shared.all(-1) == shared.any(-1)))
