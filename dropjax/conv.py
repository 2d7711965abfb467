"""A convolution whose gradients stay fast inside compiled loops on XLA:CPU.

Inside a ``lax.scan``/``while`` body, XLA:CPU computes a convolution's gradients without
its fast Eigen path. Measured here (jax 0.10, 2 CPUs, batch 64 of 8x8x32 maps, a 3x3
convolution to 64 channels): the kernel gradient takes 2.0 ms under ``jit`` and 284 ms
per step inside ``lax.scan``, the input gradient 1.5 ms and 8 ms; the forward
convolution costs the same in both. A whole train step of the digits `ConvNet` took 11 ms
under ``jit`` and 377 ms inside ``lax.scan``, so every training loop that scans over
steps (`dropjax.train.fit_ensemble`, the active-learning rounds) ran convolutional models
an order of magnitude slower than a per-step ``jit``. With this convolution the scanned
step takes 11 ms too. A similar slowdown is public for other layouts (jax-ml/jax#12868).

`conv_general_dilated` is a drop-in replacement for ``jax.lax.conv_general_dilated``
(`dropjax.models` pass it to ``flax.nnx.Conv``) with a custom VJP that writes both
gradients as plain forward convolutions in the channels-last layout, which XLA:CPU runs
at full speed inside loops: the input gradient is the output cotangent convolved with
the flipped, transposed kernel; the kernel gradient is the input convolved with the
cotangent, batch and feature axes swapped. These are the convolutions XLA's own
transpose rules build, so the gradients come out bitwise equal to
``jax.lax.conv_general_dilated``'s (tested); only the layout handed to XLA differs.
Strided, dilated and grouped convolutions fall back to the plain operation.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
    **kwargs: Any,
) -> jax.Array:
  """``jax.lax.conv_general_dilated`` with a loop-friendly kernel gradient.

  Args: as ``jax.lax.conv_general_dilated``. Grouped convolutions (``feature_group_count``
  or ``batch_group_count`` > 1) and extra keyword arguments fall back to the plain
  operation, gradient included.

  Returns:
    The convolution, equal to ``jax.lax.conv_general_dilated``'s.

  Example:
    >>> from flax import nnx
    >>> layer = nnx.Conv(1, 8, (3, 3), conv_general_dilated=conv_general_dilated,
    ...                  rngs=nnx.Rngs(0))
    >>> layer(jnp.ones((2, 8, 8, 1))).shape
    (2, 8, 8, 8)
  """
  # flax.nnx.Conv passes out_sharding=None.
  if kwargs.get("out_sharding", 0) is None:
    del kwargs["out_sharding"]
  plain = functools.partial(
      lax.conv_general_dilated, window_strides=window_strides, padding=padding,
      lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
      dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
      batch_group_count=batch_group_count, precision=precision,
      preferred_element_type=preferred_element_type, **kwargs)
  unit = lambda v: v is None or all(int(d) == 1 for d in v)
  if (feature_group_count != 1 or batch_group_count != 1 or kwargs
      or not (unit(window_strides) and unit(lhs_dilation) and unit(rhs_dilation))):
    return plain(lhs, rhs)
  dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  nd = lhs.ndim - 2
  kernel_shape = tuple(rhs.shape[d] for d in dn.rhs_spec[2:])
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(tuple(lhs.shape[d] for d in dn.lhs_spec[2:]), kernel_shape,
                                  (1,) * nd, padding)
  pads = [tuple(int(p) for p in pair) for pair in padding]
  # Channels last: (batch, *spatial, feature) maps and (*spatial, in, out) kernels.
  to_last = lambda spec: (spec[0], *spec[2:], spec[1])
  kernel_last = lambda spec: (*spec[2:], spec[1], spec[0])
  channels_last = lax.ConvDimensionNumbers(
      (0, nd + 1, *range(1, nd + 1)), (nd + 1, nd, *range(nd)), (0, nd + 1, *range(1, nd + 1)))
  conv = functools.partial(lax.conv_general_dilated, window_strides=(1,) * nd,
                           dimension_numbers=channels_last, precision=precision)
  back = lambda a, spec: jnp.transpose(a, np.argsort(spec))

  @jax.custom_vjp
  def convolve(lhs, rhs):
    return plain(lhs, rhs)

  def forward(lhs, rhs):
    return plain(lhs, rhs), (lhs, rhs)

  def backward(residuals, cotangent):
    lhs, rhs = residuals
    x = jnp.transpose(lhs, to_last(dn.lhs_spec))
    w = jnp.transpose(rhs, kernel_last(dn.rhs_spec))
    g = jnp.transpose(cotangent, to_last(dn.out_spec)).astype(x.dtype)
    spatial = tuple(range(nd))
    flipped = jnp.swapaxes(jnp.flip(w, spatial), nd, nd + 1)
    x_grad = conv(g, flipped, padding=[(k - 1 - lo, k - 1 - hi)
                                       for k, (lo, hi) in zip(kernel_shape, pads, strict=True)])
    # Batch <-> feature: the input's channels become the batch, the examples the features.
    swap = (nd + 1, *range(1, nd + 1), 0)
    w_grad = conv(jnp.transpose(x, swap), jnp.transpose(g, (*range(1, nd + 1), 0, nd + 1)),
                  padding=pads)  # (in, *kernel spatial, out)
    w_grad = jnp.transpose(w_grad, (*range(1, nd + 1), 0, nd + 1))
    return (back(x_grad, to_last(dn.lhs_spec)).astype(lhs.dtype),
            back(w_grad, kernel_last(dn.rhs_spec)).astype(rhs.dtype))

  convolve.defvjp(forward, backward)
  return convolve(lhs, rhs)
