"""Dropout variants as pure functions ``op(key, x, rate, *, ...) -> y``.

Conventions shared by every op:

* ``key`` comes first, as in `jax.random`; typed (`jax.random.key`) and legacy uint32
  keys both work, and the PRNG implementation is the key's.
* ``rate`` is the drop probability, *not* the keep probability. It may be a Python float,
  an array broadcastable to the mask, or a traced value: no Python branch depends on a
  traced rate, so schedules and learned rates never recompile. Concrete rates are
  validated to lie in [0, 1]; traced ones cannot be.
* Rate 0 is the identity and rate 1 gives zeros, with finite (zero) gradients.
* ``deterministic=True`` returns the inference-time output.
* The output has the dtype of ``x``; arithmetic is done in at least float32.
* Masks come from `dropjax.masks`: as few random bits per element as the rate needs,
  scaled by the realised keep probability so that ``E[y] = x`` exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dropjax import masks
from dropjax._validation import (
    check_floating,
    check_key,
    check_rank,
    check_rate,
    check_rate_shape,
    concrete_value,
    normalize_axes,
    poison_invalid,
)

ArrayLike = Any
PyTree = Any

# SELU's saturation value -lambda * alpha (Klambauer et al. 2017).
SELU_ALPHA_PRIME = -1.7580993408473766


def _compute_dtype(dtype: jnp.dtype) -> jnp.dtype:
  return jnp.promote_types(dtype, jnp.float32)


def _mask_shape(shape: Sequence[int], shared_axes: Sequence[int]) -> tuple[int, ...]:
  return tuple(1 if axis in shared_axes else int(d) for axis, d in enumerate(shape))


def _all_equal(value: np.ndarray | None, target: float) -> bool:
  return value is not None and bool(np.all(value == target))


def _zero_fill(rate: ArrayLike, dtype: jnp.dtype) -> jax.Array:
  """The value of dropped units: 0, or NaN where a traced rate lies outside [0, 1]."""
  return poison_invalid(jnp.zeros(jnp.shape(rate), dtype), rate)


def dropout(
    key: jax.Array,
    x: ArrayLike,
    rate: ArrayLike,
    *,
    broadcast_dims: Sequence[int] = (),
    deterministic: bool = False,
    inverted: bool = True,
    bits: int | None = None,
) -> jax.Array:
  r"""Bernoulli dropout.

  Each element (or each slice along ``broadcast_dims``) is kept with probability
  :math:`q \approx 1 - \text{rate}` and zeroed otherwise. With inverted scaling (the
  default) kept values are multiplied by :math:`1/q` during training and inference is the
  identity; with ``inverted=False`` (the classic convention of Srivastava et al.) training
  leaves kept values unscaled and inference multiplies by the keep probability :math:`q`.
  Both give the same function at inference.

  Args:
    key: a PRNG key.
    x: the input array.
    rate: the dropout probability, not the keep rate. Float, array broadcastable to the
      mask, or traced value.
    broadcast_dims: axes along which the mask is shared (e.g. the time axis for a
      per-sequence mask).
    deterministic: if True, return the inference-time output without sampling.
    inverted: scale by ``1/q`` in training (True) or by ``q`` at inference (False).
    bits: random bits per element (1, 2, 4, 8, 16, 32) or None to choose from the rate; see
      `dropjax.masks` for the resolution this gives.

  Returns:
    An array with the shape and dtype of ``x``.

  Example:
    >>> import jax, jax.numpy as jnp, dropjax
    >>> y = dropjax.dropout(jax.random.key(0), jnp.ones((2, 4)), 0.5)
    >>> sorted(set(y.ravel().tolist())) in ([0.0, 2.0], [2.0], [0.0])
    True

  References:
    Srivastava, Hinton, Krizhevsky, Sutskever, Salakhutdinov. "Dropout: a simple way to
    prevent neural networks from overfitting." JMLR 15, 2014.
  """
  x = jnp.asarray(x)
  check_floating(x)
  shared = normalize_axes(broadcast_dims, x.ndim, "broadcast_dims")
  mask_shape = _mask_shape(x.shape, shared)
  check_rate_shape(rate, mask_shape)
  value = check_rate(rate)
  bits = masks.resolve_bits(rate, bits)
  compute = _compute_dtype(x.dtype)
  if deterministic:
    if inverted:
      return x
    q = poison_invalid(masks.keep_probability(rate, bits), rate)
    return (x.astype(compute) * q).astype(x.dtype)
  check_key(key)
  if _all_equal(value, 0.0):
    return x
  if _all_equal(value, 1.0):
    return jnp.zeros_like(x)
  keep = masks.bernoulli_keep(key, mask_shape, rate, bits)
  if inverted:
    scale = masks.safe_reciprocal(masks.keep_probability(rate, bits))
  else:
    # Classic convention at rate 1: the "kept" set is empty either way.
    scale = jnp.ones((), jnp.float32)
  scale = poison_invalid(scale, rate)
  y = jnp.where(keep, x.astype(compute) * scale.astype(compute), _zero_fill(rate, compute))
  return y.astype(x.dtype)


def dropout_mask(
    key: jax.Array,
    shape: Sequence[int],
    rate: ArrayLike,
    *,
    dtype: jnp.dtype = jnp.float32,
    bits: int | None = None,
) -> jax.Array:
  """A scaled dropout mask ``m / q`` of the given shape: ``x * mask == dropout(key, x, rate)``.

  The building block for masks sampled once and reused, e.g. on the recurrent state of
  an RNN inside `jax.lax.scan` (variational dropout).

  Args:
    key: a PRNG key.
    shape: the mask shape.
    rate: the dropout probability, not the keep rate.
    dtype: the mask dtype.
    bits: random bits per element, or None to choose from the rate.

  Returns:
    An array of ``shape`` holding 0 or ``1/q``.

  Example:
    >>> import jax, dropjax
    >>> m = dropjax.dropout_mask(jax.random.key(0), (3, 4), 0.25)
    >>> m.shape
    (3, 4)
  """
  if not jax.dtypes.issubdtype(dtype, np.floating):
    raise TypeError(f"`dtype` must be a floating-point dtype; got {dtype}.")
  return dropout(key, jnp.ones(shape, dtype), rate, bits=bits)


def variational_dropout(
    key: jax.Array,
    x: ArrayLike,
    rate: ArrayLike,
    *,
    time_axis: int = 1,
    deterministic: bool = False,
    bits: int | None = None,
) -> jax.Array:
  """Time-shared dropout for sequences: one mask per sequence, reused at every step.

  For an RNN, apply this to the input sequence and multiply the recurrent state by a
  `dropout_mask` of shape ``(batch, hidden)`` drawn once, outside `jax.lax.scan`
  (see `dropjax.layers.LSTM`).

  Args:
    key: a PRNG key.
    x: a sequence batch, e.g. ``(batch, time, features)``.
    rate: the dropout probability, not the keep rate.
    time_axis: the axis along which the mask is shared.
    deterministic: if True, return ``x``.
    bits: random bits per element, or None to choose from the rate.

  Returns:
    An array with the shape and dtype of ``x``.

  Example:
    >>> import jax, jax.numpy as jnp, dropjax
    >>> y = dropjax.variational_dropout(jax.random.key(0), jnp.ones((2, 5, 3)), 0.5)
    >>> bool((y == y[:, :1]).all())  # same mask at every step
    True

  References:
    Gal, Ghahramani. "A theoretically grounded application of dropout in recurrent neural
    networks." NeurIPS 2016.
  """
  x = jnp.asarray(x)
  if x.ndim < 2:
    raise ValueError(f"variational_dropout expects a batch of sequences; got shape {x.shape}.")
  return dropout(
      key, x, rate, broadcast_dims=(time_axis,), deterministic=deterministic, bits=bits
  )


def spatial_dropout(
    key: jax.Array,
    x: ArrayLike,
    rate: ArrayLike,
    *,
    channel_axis: int = -1,
    batch_axis: int = 0,
    deterministic: bool = False,
    bits: int | None = None,
) -> jax.Array:
  """Drops whole feature maps: one Bernoulli draw per (example, channel).

  ``x`` must be a batch of 1-D, 2-D or 3-D maps (rank 3, 4 or 5). The rank is checked
  because guessing it is how PyTorch's ``Dropout2d`` once silently dropped along the
  wrong axes of 3-D input.

  Args:
    key: a PRNG key.
    x: feature maps, e.g. NHWC ``(batch, height, width, channels)``.
    rate: the dropout probability, not the keep rate.
    channel_axis: the channel axis (-1 for Flax's channels-last layout, 1 for NCHW).
    batch_axis: the batch axis.
    deterministic: if True, return ``x``.
    bits: random bits per element, or None to choose from the rate.

  Returns:
    An array with the shape and dtype of ``x``.

  Example:
    >>> import jax, jax.numpy as jnp, dropjax
    >>> y = dropjax.spatial_dropout(jax.random.key(0), jnp.ones((2, 4, 4, 3)), 0.5)
    >>> bool((y == y[:, :1, :1, :]).all())  # constant over each map
    True

  References:
    Tompson, Goroshin, Jain, LeCun, Bregler. "Efficient object localization using
    convolutional networks." CVPR 2015.
  """
  x = jnp.asarray(x)
  check_rank(x, (3, 4, 5), "spatial_dropout", "batch, 1 to 3 spatial axes, channels")
  (channel,) = normalize_axes(channel_axis, x.ndim, "channel_axis")
  (batch,) = normalize_axes(batch_axis, x.ndim, "batch_axis")
  if channel == batch:
    raise ValueError(f"`channel_axis` and `batch_axis` must differ; both are axis {channel}.")
  spatial = tuple(a for a in range(x.ndim) if a not in (channel, batch))
  return dropout(key, x, rate, broadcast_dims=spatial, deterministic=deterministic, bits=bits)


def drop_path(
    key: jax.Array,
    x: ArrayLike,
    rate: ArrayLike,
    *,
    batch_axis: int = 0,
    deterministic: bool = False,
    bits: int | None = None,
) -> jax.Array:
  """Stochastic depth: drops a residual branch for whole examples.

  Apply to the output of a residual branch before adding the skip connection:
  ``h = x + drop_path(key, branch(x), rate)``.

  Args:
    key: a PRNG key.
    x: the branch output, batch along ``batch_axis``.
    rate: the probability of dropping an example's branch, not the survival probability.
    batch_axis: the example axis; every other axis shares the mask.
    deterministic: if True, return ``x``.
    bits: random bits per element, or None to choose from the rate.

  Returns:
    An array with the shape and dtype of ``x``.

  Example:
    >>> import jax, jax.numpy as jnp, dropjax
    >>> y = dropjax.drop_path(jax.random.key(1), jnp.ones((8, 3)), 0.5)
    >>> bool(((y == 0) | (y == 2)).all())
    True

  References:
    Huang, Sun, Liu, Sedra, Weinberger. "Deep networks with stochastic depth." ECCV 2016.
  """
  x = jnp.asarray(x)
  if x.ndim < 1:
    raise ValueError("drop_path expects `x` with a batch axis; got a scalar.")
  (batch,) = normalize_axes(batch_axis, x.ndim, "batch_axis")
  others = tuple(a for a in range(x.ndim) if a != batch)
  return dropout(key, x, rate, broadcast_dims=others, deterministic=deterministic, bits=bits)


def per_depth_rates(num_layers: int, first: float, last: float) -> tuple[float, ...]:
  """Rates varying linearly with depth, from ``first`` (layer 1) to ``last`` (layer L).

  Args:
    num_layers: the number of layers L >= 1.
    first: the rate of the first layer.
    last: the rate of the last layer.

  Returns:
    A tuple of L floats.

  Example:
    >>> import dropjax
    >>> dropjax.per_depth_rates(3, 0.1, 0.5)
    (0.1, 0.3, 0.5)
  """
  if not isinstance(num_layers, (int, np.integer)) or num_layers < 1:
    raise ValueError(f"`num_layers` must be a positive integer; got {num_layers!r}.")
  check_rate(first, "first")
  check_rate(last, "last")
  if num_layers == 1:
    return (float(last),)
  return tuple(float(v) for v in np.round(np.linspace(first, last, num_layers), 12))


def drop_path_rates(num_blocks: int, max_rate: float) -> tuple[float, ...]:
  """The linear decay rule of stochastic depth: block ``l`` of ``L`` drops with ``l/L * max_rate``.

  Args:
    num_blocks: the number of residual blocks L.
    max_rate: the rate of the last block (Huang et al. use 0.5).

  Returns:
    A tuple of L floats, increasing with depth.

  Example:
    >>> import dropjax
    >>> dropjax.drop_path_rates(4, 0.5)
    (0.125, 0.25, 0.375, 0.5)

  References:
    Huang et al. "Deep networks with stochastic depth." ECCV 2016, eq. 4.
  """
  if not isinstance(num_blocks, (int, np.integer)) or num_blocks < 1:
    raise ValueError(f"`num_blocks` must be a positive integer; got {num_blocks!r}.")
  check_rate(max_rate, "max_rate")
  return per_depth_rates(num_blocks, max_rate / num_blocks, max_rate)


def dropconnect(
    key: jax.Array,
    weights: PyTree,
    rate: ArrayLike,
    *,
    deterministic: bool = False,
    bits: int | None = None,
) -> PyTree:
  """DropConnect: an independent Bernoulli mask on every weight of a pytree.

  Inverted scaling is used, so the unmasked weights are the inference-time weights
  (Wan et al. instead moment-match a Gaussian at inference; MC-sampling the masks is
  available through the layers' MC mode).

  Args:
    key: a PRNG key (split over the leaves).
    weights: an array or pytree of arrays (e.g. ``{"kernel": w, "bias": b}``).
    rate: the dropout probability of each weight, not the keep rate.
    deterministic: if True, return ``weights`` unchanged.
    bits: random bits per element, or None to choose from the rate.

  Returns:
    A pytree like ``weights`` with masked, rescaled leaves.

  Example:
    >>> import jax, jax.numpy as jnp, dropjax
    >>> w = dropjax.dropconnect(jax.random.key(0), {"kernel": jnp.ones((4, 2))}, 0.5)
    >>> w["kernel"].shape
    (4, 2)

  References:
    Wan, Zeiler, Zhang, LeCun, Fergus. "Regularization of neural networks using
    DropConnect." ICML 2013.
  """
  check_rate(rate)
  leaves, treedef = jax.tree_util.tree_flatten(weights)
  if deterministic or not leaves:
    return weights
  check_key(key)
  keys = jax.random.split(key, len(leaves))
  masked = [dropout(k, leaf, rate, bits=bits) for k, leaf in zip(keys, leaves, strict=True)]
  return jax.tree_util.tree_unflatten(treedef, masked)


def dropconnect_dense(
    key: jax.Array,
    x: ArrayLike,
    kernel: ArrayLike,
    rate: ArrayLike,
    *,
    bias: ArrayLike | None = None,
    per_example: bool = False,
    deterministic: bool = False,
    bits: int | None = None,
) -> jax.Array:
  """A dense layer ``x @ W + b`` with DropConnect masks on ``W`` and ``b``.

  By default one mask is shared by the whole batch (what most implementations do and
  what costs one mask). With ``per_example=True`` every example along axis 0 gets its own
  mask, as in Wan et al.; this materialises one masked kernel per example.

  Args:
    key: a PRNG key.
    x: inputs ``(batch, ..., in_features)``.
    kernel: ``(in_features, out_features)``.
    rate: the dropout probability of each weight, not the keep rate.
    bias: optional ``(out_features,)``.
    per_example: draw a separate mask for every example.
    deterministic: if True, use the unmasked weights.
    bits: random bits per element, or None to choose from the rate.

  Returns:
    ``(batch, ..., out_features)``.

  Example:
    >>> import jax, jax.numpy as jnp, dropjax
    >>> y = dropjax.dropconnect_dense(jax.random.key(0), jnp.ones((5, 3)), jnp.ones((3, 2)), 0.5)
    >>> y.shape
    (5, 2)

  References:
    Wan et al. "Regularization of neural networks using DropConnect." ICML 2013.
  """
  x = jnp.asarray(x)
  params = {"kernel": jnp.asarray(kernel)}
  if bias is not None:
    params["bias"] = jnp.asarray(bias)
  if params["kernel"].ndim != 2:
    raise ValueError(f"`kernel` must have shape (in, out); got {params['kernel'].shape}.")

  def apply(p, inputs):
    y = inputs @ p["kernel"]
    return y + p["bias"] if "bias" in p else y

  if deterministic:
    return apply(params, x)
  if not per_example:
    return apply(dropconnect(key, params, rate, bits=bits), x)
  if x.ndim < 2:
    raise ValueError(f"per_example=True needs a batch axis in `x`; got shape {x.shape}.")
  check_rate(rate)
  check_key(key)
  keys = jax.random.split(key, x.shape[0])
  return jax.vmap(lambda k, xi: apply(dropconnect(k, params, rate, bits=bits), xi))(keys, x)


def gaussian_dropout(
    key: jax.Array,
    x: ArrayLike,
    rate: ArrayLike,
    *,
    deterministic: bool = False,
) -> jax.Array:
  r"""Multiplicative Gaussian noise with the mean and variance of inverted Bernoulli dropout.

  :math:`y = x \cdot \epsilon`, :math:`\epsilon \sim N(1, \text{rate}/(1-\text{rate}))`.
  At rate 1 the variance diverges; the output is zeros, the limit of dropping everything.

  Args:
    key: a PRNG key.
    x: the input array.
    rate: the equivalent dropout probability, not the keep rate.
    deterministic: if True, return ``x``.

  Returns:
    An array with the shape and dtype of ``x``.

  Example:
    >>> import jax, jax.numpy as jnp, dropjax
    >>> dropjax.gaussian_dropout(jax.random.key(0), jnp.ones(3), 0.0).tolist()
    [1.0, 1.0, 1.0]

  References:
    Srivastava et al. "Dropout: a simple way to prevent neural networks from
    overfitting." JMLR 2014, section 10.
  """
  x = jnp.asarray(x)
  check_floating(x)
  check_rate_shape(rate, x.shape)
  value = check_rate(rate)
  if deterministic or _all_equal(value, 0.0):
    return x
  check_key(key)
  if _all_equal(value, 1.0):
    return jnp.zeros_like(x)
  compute = _compute_dtype(x.dtype)
  traced_rate = rate
  rate = jnp.asarray(rate, compute)
  dropping_all = rate >= 1.0
  # Double where: sqrt'(0) is infinite, so rate 0 gets a zero (not NaN) gradient.
  positive = (rate > 0.0) & ~dropping_all
  safe_rate = jnp.where(positive, rate, 0.5)
  std = jnp.where(positive, jnp.sqrt(safe_rate / (1.0 - safe_rate)), 0.0)
  std = poison_invalid(std, traced_rate)
  noise = jax.random.normal(key, x.shape, compute)
  y = jnp.where(dropping_all, _zero_fill(traced_rate, compute),
                x.astype(compute) * (1.0 + std * noise))
  return y.astype(x.dtype)


def alpha_dropout(
    key: jax.Array,
    x: ArrayLike,
    rate: ArrayLike,
    *,
    deterministic: bool = False,
    bits: int | None = None,
) -> jax.Array:
  r"""Dropout for SELU networks that keeps zero mean and unit variance.

  Dropped units are set to SELU's saturation value :math:`\alpha' = -\lambda\alpha`, then
  :math:`y = a\,\tilde x + b` with :math:`a = (q + \alpha'^2 q (1-q))^{-1/2}` and
  :math:`b = -a (1-q) \alpha'`, where :math:`q` is the (realised) keep probability. For
  inputs with mean 0 and variance 1 the output has mean 0 and variance 1.

  Args:
    key: a PRNG key.
    x: the input array (typically SELU activations).
    rate: the dropout probability, not the keep rate.
    deterministic: if True, return ``x``.
    bits: random bits per element, or None to choose from the rate.

  Returns:
    An array with the shape and dtype of ``x``.

  Example:
    >>> import jax, jax.numpy as jnp, dropjax
    >>> dropjax.alpha_dropout(jax.random.key(0), jnp.ones(2), 0.0).tolist()
    [1.0, 1.0]

  References:
    Klambauer, Unterthiner, Mayr, Hochreiter. "Self-normalizing neural networks."
    NeurIPS 2017.
  """
  x = jnp.asarray(x)
  check_floating(x)
  check_rate_shape(rate, x.shape)
  value = check_rate(rate)
  if deterministic or _all_equal(value, 0.0):
    return x
  check_key(key)
  if _all_equal(value, 1.0):
    return jnp.zeros_like(x)
  bits = masks.resolve_bits(rate, bits)
  compute = _compute_dtype(x.dtype)
  q = poison_invalid(masks.keep_probability(rate, bits), rate).astype(compute)
  keep = masks.bernoulli_keep(key, x.shape, rate, bits)
  variance = q + SELU_ALPHA_PRIME**2 * q * (1.0 - q)
  a = jnp.where(variance > 0, jax.lax.rsqrt(jnp.where(variance > 0, variance, 1.0)), 0.0)
  b = -a * (1.0 - q) * SELU_ALPHA_PRIME
  y = a * jnp.where(keep, x.astype(compute), SELU_ALPHA_PRIME) + b
  return y.astype(x.dtype)


def _block_counts(size: int, block: int) -> np.ndarray:
  """How many valid block positions cover each index of an axis of length `size`."""
  starts = np.arange(size - block + 1)
  counts = np.zeros(size)
  for s in starts:
    counts[s : s + block] += 1
  return counts


def dropblock_seed_rate(
    rate: ArrayLike, height: int, width: int, block_size: int
) -> jax.Array | np.ndarray:
  r"""The Bernoulli rate :math:`\gamma` of block seeds (Ghiasi et al. 2018, eq. 1).

  :math:`\gamma = \frac{\text{rate}}{b^2}\frac{HW}{(H-b+1)(W-b+1)}`, clipped to 1; seeds are
  drawn only where a whole block fits.
  """
  valid = (height - block_size + 1) * (width - block_size + 1)
  factor = (height * width) / (block_size**2 * valid)
  value = concrete_value(rate)
  if value is not None:
    # Kept in numpy so that jit and eager choose the same mask resolution.
    return np.minimum(value * factor, 1.0)
  return jnp.minimum(jnp.asarray(rate, jnp.float32) * factor, 1.0)


def dropblock_expected_drop_fraction(
    rate: float, height: int, width: int, block_size: int
) -> float:
  """The exact expected fraction of a map that `dropblock` drops (blocks overlap)."""
  check_rate(rate)
  if not isinstance(block_size, (int, np.integer)) or not 1 <= block_size <= min(height, width):
    raise ValueError(f"`block_size` must be an integer in [1, {min(height, width)}] for a "
                     f"{height}x{width} map; got {block_size!r}.")
  gamma = float(dropblock_seed_rate(rate, height, width, block_size))
  cover = np.outer(_block_counts(height, block_size), _block_counts(width, block_size))
  return float(np.mean(1.0 - (1.0 - gamma) ** cover))


def dropblock(
    key: jax.Array,
    x: ArrayLike,
    rate: ArrayLike,
    *,
    block_size: int = 7,
    data_format: str = "NHWC",
    shared_across_channels: bool = False,
    deterministic: bool = False,
    bits: int | None = None,
) -> jax.Array:
  r"""DropBlock: drops contiguous ``block_size x block_size`` squares of feature maps.

  Block seeds are Bernoulli(:math:`\gamma`) over the region where a whole block fits
  (`dropblock_seed_rate`), expanded into blocks by a max-pool; the output is rescaled by
  the realised keep fraction of the whole mask, ``size(M) / sum(M)``, as in the paper.
  Overlapping blocks make the expected drop fraction slightly differ from ``rate``;
  `dropblock_expected_drop_fraction` gives it exactly.

  Args:
    key: a PRNG key.
    x: a batch of maps, NHWC (Flax's layout, the default) or NCHW.
    rate: the target fraction of units to drop (``1 - keep_prob`` in the paper).
    block_size: the side of the square blocks; must fit inside the map.
    data_format: ``"NHWC"`` or ``"NCHW"``.
    shared_across_channels: one mask for all channels of an example (True), or an
      independent mask per channel (False, the default). The default follows the paper:
      Ghiasi et al. (§3) describe both, say Algorithm 1 is the per-channel one and that it
      "tends to work better in our experiments"; torchvision's ``drop_block2d`` and timm's
      ``drop_block_2d`` also draw one mask per channel. The studies of this repository
      that predate this default pin ``True`` (see `dropjax.models`).
    deterministic: if True, return ``x``.
    bits: random bits per seed, or None to choose from the seed rate.

  Returns:
    An array with the shape and dtype of ``x``.

  Example:
    >>> import jax, jax.numpy as jnp, dropjax
    >>> y = dropjax.dropblock(jax.random.key(0), jnp.ones((2, 8, 8, 3)), 0.2, block_size=3)
    >>> y.shape
    (2, 8, 8, 3)

  References:
    Ghiasi, Lin, Le. "DropBlock: a regularization method for convolutional networks."
    NeurIPS 2018.
  """
  value = check_rate(rate)
  x = jnp.asarray(x)
  check_floating(x)
  if data_format not in ("NHWC", "NCHW"):
    raise ValueError(f'`data_format` must be "NHWC" or "NCHW"; got {data_format!r}.')
  check_rank(x, (4,), "dropblock", data_format)
  if not isinstance(block_size, (int, np.integer)) or block_size < 1:
    raise ValueError(f"`block_size` must be a positive integer; got {block_size!r}.")
  if data_format == "NCHW":
    height, width = x.shape[2], x.shape[3]
  else:
    height, width = x.shape[1], x.shape[2]
  if not isinstance(shared_across_channels, (bool, np.bool_)):
    raise TypeError(
        f"`shared_across_channels` must be True or False; got {shared_across_channels!r}.")
  if block_size > min(height, width):
    raise ValueError(
        f"`block_size`={block_size} is larger than the {height}x{width} feature map; it must "
        f"be at most {min(height, width)}."
    )
  if deterministic or _all_equal(value, 0.0):
    return x
  check_key(key)
  if _all_equal(value, 1.0):
    return jnp.zeros_like(x)

  nhwc = x if data_format == "NHWC" else jnp.transpose(x, (0, 2, 3, 1))
  channels = nhwc.shape[3] if not shared_across_channels else 1
  gamma = dropblock_seed_rate(rate, height, width, block_size)
  seed_bits = masks.resolve_bits(gamma, bits)
  seed_shape = (x.shape[0], height - block_size + 1, width - block_size + 1, channels)
  check_rate_shape(rate, seed_shape)
  # A seed marks a block's top-left corner; drop = "some seed in the b x b window above-left".
  seeds = ~masks.bernoulli_keep(key, seed_shape, gamma, seed_bits)
  pad = block_size - 1
  padded = jnp.pad(seeds, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  dropped = jax.lax.reduce_window(
      padded, False, jax.lax.bitwise_or, (1, block_size, block_size, 1), (1, 1, 1, 1), "VALID"
  )
  keep = ~dropped
  kept = jnp.sum(keep, dtype=jnp.float32)
  scale = masks.safe_reciprocal(kept / keep.size)
  compute = _compute_dtype(x.dtype)
  # Overlapping blocks seeded at gamma(rate=1) do not cover the map; rate 1 still drops all.
  scale = jnp.where(jnp.asarray(rate, jnp.float32) >= 1.0, 0.0, scale)
  scale = poison_invalid(scale, rate)
  y = jnp.where(keep, nhwc.astype(compute) * scale.astype(compute), _zero_fill(rate, compute))
  y = y.astype(x.dtype)
  return y if data_format == "NHWC" else jnp.transpose(y, (0, 3, 1, 2))
