"""Concrete dropout: a relaxed Bernoulli mask whose rate is learned by gradient descent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from dropjax._validation import (
    check_floating,
    check_key,
    check_rank,
    check_rate,
    check_rate_shape,
    normalize_axes,
    poison_invalid,
)

ArrayLike = Any
PyTree = Any

DEFAULT_TEMPERATURE = 0.1
# The reference implementation's K.epsilon(): keeps every log and 1/(1-p) finite.
EPSILON = 1e-7


def _clip_rate(rate: ArrayLike) -> jax.Array:
  return jnp.clip(jnp.asarray(rate, jnp.float32), EPSILON, 1.0 - EPSILON)


def concrete_dropout(
    key: jax.Array,
    x: ArrayLike,
    rate: ArrayLike,
    *,
    temperature: float = DEFAULT_TEMPERATURE,
    broadcast_dims: Sequence[int] = (),
    deterministic: bool = False,
) -> jax.Array:
  r"""Dropout with a Concrete (relaxed Bernoulli) mask, differentiable in ``rate``.

  With :math:`u \sim U(0, 1)` per element,
  :math:`z = \sigma\big((\log p - \log(1-p) + \log u - \log(1-u)) / t\big)` is the relaxed
  *drop* indicator (:math:`P(z > 1/2) = p` exactly), and :math:`y = x (1 - z) / (1 - p)`.
  Pass ``rate = jax.nn.sigmoid(logit)`` to learn the logit; gradients flow to it (the rate
  is never stop-gradiented). Rates are clipped to ``[1e-7, 1 - 1e-7]`` inside the logs
  so that nothing is NaN when the learned rate saturates; exactly 0 and 1 give the
  identity and zeros.

  Args:
    key: a PRNG key.
    x: the input array.
    rate: the dropout probability ``p``, not the keep rate; typically traced and learned.
    temperature: the relaxation temperature ``t`` (0.1 in Gal et al.).
    broadcast_dims: axes sharing the relaxed mask.
    deterministic: if True, return ``x`` (the inverted-scaling inference output).

  Returns:
    An array with the shape and dtype of ``x``.

  Example:
    >>> import jax, jax.numpy as jnp, dropjax
    >>> f = lambda logit: dropjax.concrete_dropout(
    ...     jax.random.key(0), jnp.ones(8), jax.nn.sigmoid(logit)).sum()
    >>> bool(jnp.isfinite(jax.grad(f)(-2.0)))
    True

  References:
    Gal, Hron, Kendall. "Concrete dropout." NeurIPS 2017.
  """
  x = jnp.asarray(x)
  check_floating(x)
  shared = normalize_axes(broadcast_dims, x.ndim, "broadcast_dims")
  mask_shape = tuple(1 if a in shared else d for a, d in enumerate(x.shape))
  check_rate_shape(rate, mask_shape)
  value = check_rate(rate)
  if not isinstance(temperature, jax.core.Tracer) and not temperature > 0:
    raise ValueError(f"`temperature` must be positive; got {temperature!r}.")
  if deterministic or (value is not None and (value == 0).all()):
    return x
  check_key(key)
  if value is not None and (value == 1).all():
    return jnp.zeros_like(x)
  compute = jnp.promote_types(x.dtype, jnp.float32)
  # A traced rate outside [0, 1] makes p, and so the output, NaN.
  p = poison_invalid(_clip_rate(rate), rate)
  u = jax.random.uniform(key, mask_shape, jnp.float32)
  logits = (
      jnp.log(p + EPSILON)
      - jnp.log(1.0 - p + EPSILON)
      + jnp.log(u + EPSILON)
      - jnp.log(1.0 - u + EPSILON)
  )
  drop = jax.nn.sigmoid(logits / temperature)
  y = x.astype(compute) * ((1.0 - drop) / (1.0 - p)).astype(compute)
  rate_arr = jnp.asarray(rate, jnp.float32)
  y = jnp.where(rate_arr == 1.0, 0.0, jnp.where(rate_arr == 0.0, x.astype(compute), y))
  return y.astype(x.dtype)


def spatial_concrete_dropout(
    key: jax.Array,
    x: ArrayLike,
    rate: ArrayLike,
    *,
    channel_axis: int = -1,
    temperature: float = DEFAULT_TEMPERATURE,
    deterministic: bool = False,
) -> jax.Array:
  """Concrete dropout of whole feature maps: one relaxed mask per (example, channel).

  The variant Gal et al. recommend for convolutional layers (their README: plain
  concrete dropout weights the regulariser wrongly for convolutions). Use
  ``input_dim = channels`` in `concrete_dropout_regularizer`.

  Args:
    key: a PRNG key.
    x: a batch of 1-D, 2-D or 3-D maps, batch first.
    rate: the dropout probability, not the keep rate.
    channel_axis: the channel axis (-1 for channels-last).
    temperature: the relaxation temperature.
    deterministic: if True, return ``x``.

  Returns:
    An array with the shape and dtype of ``x``.

  Example:
    >>> import jax, jax.numpy as jnp, dropjax
    >>> y = dropjax.spatial_concrete_dropout(jax.random.key(0), jnp.ones((2, 4, 4, 3)), 0.3)
    >>> bool((y == y[:, :1, :1, :]).all())
    True

  References:
    Gal, Hron, Kendall. "Concrete dropout." NeurIPS 2017; reference code
    yaringal/ConcreteDropout (SpatialConcreteDropout).
  """
  x = jnp.asarray(x)
  check_rank(x, (3, 4, 5), "spatial_concrete_dropout", "batch, 1 to 3 spatial axes, channels")
  (channel,) = normalize_axes(channel_axis, x.ndim, "channel_axis")
  if channel == 0:
    raise ValueError("`channel_axis` must not be the batch axis 0.")
  spatial = tuple(a for a in range(1, x.ndim) if a != channel)
  return concrete_dropout(
      key, x, rate, temperature=temperature, broadcast_dims=spatial, deterministic=deterministic
  )


def concrete_dropout_regularizer(
    weights: PyTree,
    rate: ArrayLike,
    *,
    input_dim: int,
    weight_regularizer: float = 1e-6,
    dropout_regularizer: float = 1e-5,
) -> jax.Array:
  r"""The Concrete-dropout penalty of one layer, to be added to the loss.

  .. math::
     \lambda_w \frac{\sum W^2}{1 - p} + \lambda_p K \big(p \log p + (1-p)\log(1-p)\big)

  where ``K`` is the layer's input dimension. The second term is the negative entropy
  of the Bernoulli(p); it pulls ``p`` towards 1/2 while the first pulls it towards 0. With
  ``N`` training points, prior length-scale ``l`` and precision ``tau``, Gal et al. use
  ``weight_regularizer = l**2 / (tau N)`` and ``dropout_regularizer = 2 / (tau N)`` (drop
  the factor 2 for a cross-entropy loss).

  Args:
    weights: the weights the dropped inputs feed (array or pytree; the reference Keras
      code uses the kernel only, the PyTorch code every parameter of the layer).
    rate: the layer's dropout probability (traced when learned).
    input_dim: ``K``, the number of input features (channels for spatial dropout).
    weight_regularizer: :math:`\lambda_w`.
    dropout_regularizer: :math:`\lambda_p`.

  Returns:
    A scalar.

  Example:
    >>> import jax.numpy as jnp, dropjax
    >>> r = dropjax.concrete_dropout_regularizer(jnp.ones((3, 2)), 0.1, input_dim=3)
    >>> bool(r < 0)  # the entropy term dominates for tiny weights
    True

  References:
    Gal, Hron, Kendall. "Concrete dropout." NeurIPS 2017, eq. 3.
  """
  check_rate(rate)
  p = poison_invalid(_clip_rate(rate), rate)
  squared = sum(jnp.sum(jnp.square(w.astype(jnp.float32))) for w in jax.tree.leaves(weights))
  neg_entropy = p * jnp.log(p) + (1.0 - p) * jnp.log(1.0 - p)
  return weight_regularizer * squared / (1.0 - p) + dropout_regularizer * input_dim * neg_entropy
