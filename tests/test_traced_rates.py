"""A traced rate cannot be checked in Python: out of [0, 1] it makes the output NaN, loudly."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dropjax

KEY = jax.random.key(0)
# op(key, x, rate), input shape
OPS = {
    "dropout": (dropjax.dropout, (6, 5)),
    "dropout_classic": (functools.partial(dropjax.dropout, inverted=False), (6, 5)),
    "dropout_classic_inference": (
        functools.partial(dropjax.dropout, inverted=False, deterministic=True), (6, 5)),
    "spatial_dropout": (dropjax.spatial_dropout, (2, 4, 4, 3)),
    "variational_dropout": (dropjax.variational_dropout, (2, 4, 3)),
    "drop_path": (dropjax.drop_path, (6, 5)),
    "dropconnect": (dropjax.dropconnect, (6, 5)),
    "dropblock": (functools.partial(dropjax.dropblock, block_size=3), (2, 6, 6, 3)),
    "gaussian_dropout": (dropjax.gaussian_dropout, (6, 5)),
    "alpha_dropout": (dropjax.alpha_dropout, (6, 5)),
    "concrete_dropout": (dropjax.concrete_dropout, (6, 5)),
    "spatial_concrete_dropout": (dropjax.spatial_concrete_dropout, (2, 4, 4, 3)),
    "dropout_mask": (lambda k, x, r: dropjax.dropout_mask(k, x.shape, r), (6, 5)),
    "dropconnect_dense": (lambda k, x, r: dropjax.dropconnect_dense(k, x, jnp.ones((5, 2)), r),
                          (6, 5)),
}


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("rate", [-0.5, 1.5, float("nan")])
def test_traced_out_of_range_rate_gives_nan(name, rate):
  op, shape = OPS[name]
  y = jax.jit(lambda r: op(KEY, jnp.ones(shape), r))(jnp.float32(rate))
  assert bool(jnp.all(jnp.isnan(y))), y


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("rate", [0.0, 0.3, 1.0])
def test_traced_valid_rate_equals_the_concrete_one(name, rate):
  op, shape = OPS[name]
  x = jax.random.normal(jax.random.key(1), shape) + 2.0
  traced = jax.jit(lambda r: op(KEY, x, r))(jnp.float32(rate))
  assert bool(jnp.all(jnp.isfinite(traced)))
  if rate in (0.0, 1.0):  # the concrete path short-cuts these; the values must agree
    np.testing.assert_allclose(traced, op(KEY, x, rate), rtol=1e-6, atol=1e-6)


def test_vmapped_rates_poison_only_the_bad_member():
  rates = jnp.array([0.2, -0.1, 0.5])
  y = jax.vmap(lambda r: dropjax.dropout(KEY, jnp.ones(64), r))(rates)
  assert bool(jnp.all(jnp.isfinite(y[0]))) and bool(jnp.all(jnp.isfinite(y[2])))
  assert bool(jnp.all(jnp.isnan(y[1])))


@pytest.mark.parametrize("op", [dropjax.gaussian_dropout, dropjax.dropout, dropjax.alpha_dropout,
                                dropjax.concrete_dropout])
def test_gradient_in_the_rate_is_finite_at_zero(op):
  grad = jax.grad(lambda r: op(KEY, jnp.ones(16) * 1.5, r).sum())(0.0)
  assert bool(jnp.isfinite(grad))
