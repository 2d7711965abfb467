"""CPU-friendly convolution and pooling: same values and gradients as XLA's, any layout."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dropjax import conv
from dropjax.models import ConvNet, KerasMnistCNN, LeNet5, max_pool_2x2

LAYOUTS = [
    # lhs shape, rhs shape, padding, dimension numbers, strides, rhs dilation
    ((4, 8, 8, 3), (3, 3, 3, 5), "SAME", ("NHWC", "HWIO", "NHWC"), (1, 1), (1, 1)),
    ((4, 12, 12, 2), (5, 5, 2, 6), "VALID", ("NHWC", "HWIO", "NHWC"), (1, 1), (1, 1)),
    ((4, 3, 9, 7), (6, 3, 3, 2), ((1, 0), (2, 1)), ("NCHW", "OIHW", "NCHW"), (1, 1), (1, 1)),
    ((4, 10, 3), (3, 3, 4), "SAME", ("NWC", "WIO", "NWC"), (1,), (1,)),
    ((2, 5, 6, 4, 2), (2, 3, 2, 2, 3), "SAME", ("NDHWC", "DHWIO", "NDHWC"), (1, 1, 1),
     (1, 1, 1)),
    # Strided and dilated: the plain operation's gradient.
    ((4, 12, 12, 2), (5, 5, 2, 6), "SAME", ("NHWC", "HWIO", "NHWC"), (2, 2), (1, 1)),
    ((4, 12, 12, 2), (3, 3, 2, 6), "SAME", ("NHWC", "HWIO", "NHWC"), (1, 1), (2, 2)),
]


@pytest.mark.parametrize("lhs_shape,rhs_shape,padding,dn,strides,dilation", LAYOUTS)
def test_values_and_gradients_equal_xla_convolution(lhs_shape, rhs_shape, padding, dn, strides,
                                                    dilation):
  k1, k2 = jax.random.split(jax.random.key(0))
  x, w = jax.random.normal(k1, lhs_shape), jax.random.normal(k2, rhs_shape)

  def loss(fn):
    return lambda x, w: jnp.sum(jnp.sin(fn(x, w, strides, padding, rhs_dilation=dilation,
                                           dimension_numbers=dn)))

  ours, theirs = loss(conv.conv_general_dilated), loss(jax.lax.conv_general_dilated)
  np.testing.assert_array_equal(ours(x, w), theirs(x, w))
  # The same convolutions as XLA's transpose rules, so equal up to (at most) summation order.
  for a, b in zip(jax.grad(ours, (0, 1))(x, w), jax.grad(theirs, (0, 1))(x, w), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * float(jnp.abs(b).max()))
  # Inside a compiled loop (where it matters) and under vmap.
  scanned = jax.jit(lambda w: jax.lax.scan(
      lambda w, _: (w - 1e-3 * jax.grad(ours, 1)(x, w), None), w, None, length=3)[0])(w)
  looped = w
  for _ in range(3):
    looped = looped - 1e-3 * jax.grad(theirs, 1)(x, looped)
  np.testing.assert_allclose(scanned, looped, rtol=1e-5, atol=1e-5)
  batched = jax.vmap(jax.grad(ours, 1), in_axes=(None, 0))(x, jnp.stack([w, 2 * w]))
  np.testing.assert_allclose(batched[1], jax.grad(theirs, 1)(x, 2 * w), rtol=1e-5, atol=1e-4)


def test_grouped_convolution_falls_back_to_xla():
  x = jax.random.normal(jax.random.key(0), (2, 6, 6, 4))
  w = jax.random.normal(jax.random.key(1), (3, 3, 2, 4))
  loss = lambda fn: lambda w: jnp.sum(fn(x, w, (1, 1), "SAME", feature_group_count=2,
                                         dimension_numbers=("NHWC", "HWIO", "NHWC")) ** 2)
  np.testing.assert_array_equal(jax.grad(loss(conv.conv_general_dilated))(w),
                                jax.grad(loss(jax.lax.conv_general_dilated))(w))


@pytest.mark.parametrize("module", [ConvNet, LeNet5, KerasMnistCNN])
def test_conv_models_take_the_custom_gradient_by_default(module):
  """nnx.Conv hands the primitive ``out_sharding=None``; that must not send it to the
  fallback (it did, before this was tested)."""
  assert (inspect.signature(module.__init__).parameters["conv_general_dilated"].default
          is conv.conv_general_dilated)
  kwargs = {"spatial_size": 8, "rngs": nnx.Rngs(params=0, dropout=1)}
  model = module(1, 10, **kwargs) if module is ConvNet else module(10, **kwargs)
  model.eval()
  x = jax.random.normal(jax.random.key(2), (16, 8, 8, 1))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  loss = lambda p: jnp.sum(nnx.merge(graphdef, p, rest)(x) ** 2)
  assert "custom_vjp_call" in str(jax.make_jaxpr(loss)(params))
  # Its gradients are XLA's: the same model built on lax.conv_general_dilated.
  plain = module(1, 10, conv_general_dilated=jax.lax.conv_general_dilated, **(
      kwargs | {"rngs": nnx.Rngs(params=0, dropout=1)})) if module is ConvNet else module(
      10, conv_general_dilated=jax.lax.conv_general_dilated,
      **(kwargs | {"rngs": nnx.Rngs(params=0, dropout=1)}))
  plain.eval()
  plain_graphdef, plain_params, plain_rest = nnx.split(plain, nnx.Param, ...)
  plain_loss = lambda p: jnp.sum(nnx.merge(plain_graphdef, p, plain_rest)(x) ** 2)
  for a, b in zip(jax.tree.leaves(jax.grad(loss)(params)),
                  jax.tree.leaves(jax.grad(plain_loss)(plain_params)), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shape", [(3, 8, 8, 4), (2, 7, 9, 3)])
def test_max_pool_2x2_equals_nnx_max_pool_values_and_gradients_bitwise(shape):
  x = jax.random.normal(jax.random.key(0), shape)  # continuous: no tied maxima
  cotangent = jax.random.normal(jax.random.key(1), (shape[0], shape[1] // 2, shape[2] // 2,
                                                    shape[3]))
  ours = lambda x: max_pool_2x2(x)
  flax = lambda x: nnx.max_pool(x, (2, 2), strides=(2, 2))
  np.testing.assert_array_equal(ours(x), flax(x))
  np.testing.assert_array_equal(jax.vjp(ours, x)[1](cotangent)[0],
                                jax.vjp(flax, x)[1](cotangent)[0])


def test_max_pool_2x2_splits_the_gradient_of_tied_maxima_and_checks_rank():
  x = jnp.asarray([[3.0, 3.0], [1.0, 0.0]]).reshape(1, 2, 2, 1)
  grad = jax.grad(lambda x: max_pool_2x2(x).sum())(x)
  np.testing.assert_array_equal(grad.reshape(2, 2), [[0.5, 0.5], [0.0, 0.0]])
  with pytest.raises(ValueError, match="`x` must be"):
    max_pool_2x2(jnp.ones((2, 2, 1)))
