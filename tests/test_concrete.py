"""Concrete dropout: the relaxed mask's law, learnable-rate gradients, the regulariser."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dropjax

KEY = jax.random.key(11)
N = 1 << 21


@pytest.mark.parametrize("rate", [0.1, 0.4])
def test_relaxed_mask_drops_with_probability_p(rate):
  # P(z > 1/2) = P(logit p + logistic noise > 0) = p exactly, at any temperature.
  y = dropjax.concrete_dropout(KEY, jnp.ones(N), rate)
  drop = 1.0 - np.asarray(y) * (1.0 - rate)
  se = np.sqrt(rate * (1 - rate) / N)
  assert abs(np.mean(drop > 0.5) - rate) <= 5 * se
  # At temperature 0.1 the relaxed mask is nearly binary.
  assert np.mean((drop > 0.05) & (drop < 0.95)) < 0.15


def test_low_temperature_approaches_bernoulli_dropout_expectation():
  rate = 0.3
  y = np.asarray(dropjax.concrete_dropout(KEY, jnp.ones(N), rate, temperature=0.01))
  assert abs(y.mean() - 1.0) < 0.01


def test_gradient_wrt_rate_logit_is_finite_and_has_the_right_sign():
  w = jnp.ones((16, 4))

  def weight_term(logit):
    return dropjax.concrete_dropout_regularizer(
        w, jax.nn.sigmoid(logit), input_dim=16, weight_regularizer=1.0, dropout_regularizer=0.0)

  def entropy_term(logit):
    return dropjax.concrete_dropout_regularizer(
        w, jax.nn.sigmoid(logit), input_dim=16, weight_regularizer=0.0, dropout_regularizer=1.0)

  # ||W||^2 / (1 - p) grows with p; the negative entropy falls towards p = 1/2.
  assert float(jax.grad(weight_term)(-1.0)) > 0
  assert float(jax.grad(entropy_term)(-1.0)) < 0
  assert float(jax.grad(entropy_term)(1.0)) > 0
  for logit in (-60.0, -20.0, 20.0, 60.0):
    assert np.isfinite(float(jax.grad(weight_term)(logit)))
    assert np.isfinite(float(jax.grad(entropy_term)(logit)))


def test_gradients_through_the_mask_are_finite_when_the_rate_saturates():
  x = jax.random.normal(KEY, (64, 8))

  def loss(logit):
    return jnp.sum(dropjax.concrete_dropout(KEY, x, jax.nn.sigmoid(logit)) ** 2)

  for logit in (-80.0, -10.0, 0.0, 10.0, 80.0):
    value, grad = jax.value_and_grad(loss)(logit)
    assert np.isfinite(float(value)) and np.isfinite(float(grad))


def test_regularizer_matches_the_formula():
  w = {"kernel": jnp.arange(6.0).reshape(3, 2), "bias": jnp.ones(2)}
  p = 0.2
  expected = 1e-3 * (55.0 + 2.0) / (1 - p) + 1e-2 * 3 * (p * np.log(p) + (1 - p) * np.log(1 - p))
  got = dropjax.concrete_dropout_regularizer(
      w, p, input_dim=3, weight_regularizer=1e-3, dropout_regularizer=1e-2)
  np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_spatial_variant_shares_the_mask_over_space():
  y = dropjax.spatial_concrete_dropout(KEY, jnp.ones((8, 5, 5, 16)), 0.3)
  np.testing.assert_array_equal(y, jnp.broadcast_to(y[:, :1, :1], y.shape))
  with pytest.raises(ValueError, match="rank 3 or 4 or 5"):
    dropjax.spatial_concrete_dropout(KEY, jnp.ones((5, 16)), 0.3)


def test_temperature_must_be_positive():
  with pytest.raises(ValueError, match="`temperature`"):
    dropjax.concrete_dropout(KEY, jnp.ones(3), 0.2, temperature=0.0)
