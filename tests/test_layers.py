"""NNX layers: same output as their op for the same key, train/eval/MC switches."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import dropjax
from dropjax import layers, variants

KEY = jax.random.key(5)
RATE = 0.3


def _layer_cases():
  """``{id: (variant, example)}``: every layer example of every variant in the registry
  (`dropjax.variants`), so a new variant's layer is covered here."""
  cases = {}
  for variant in variants.REGISTRY.values():
    for example in variant.layer_examples:
      cases[variant.name + (f"_{example.name}" if example.name else "")] = (variant, example)
  return cases


CASES = _layer_cases()


def _make(name, rngs):
  variant, example = CASES[name]
  kwargs = example.kwargs if example.layer_kwargs is None else example.layer_kwargs
  return variant.build_layer(RATE, rngs=rngs, **kwargs)


def _x(name):
  return jax.random.normal(jax.random.key(1), CASES[name][1].shape) + 2.0


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_equals_op_for_the_same_key(name):
  variant, example = CASES[name]
  layer = _make(name, nnx.Rngs(0))
  assert isinstance(layer, variant.layer)
  x = _x(name)
  y = layer(x, rngs=KEY)
  # Same mask; the last ulp may differ where XLA fuses differently (the LSTM's scan).
  np.testing.assert_allclose(y, variant.layer_reference(layer, KEY, x, example), rtol=1e-5,
                             atol=1e-6)
  assert not np.array_equal(y, layer(x, rngs=jax.random.key(6)))  # the key matters


@pytest.mark.parametrize("name", sorted(CASES))
def test_train_eval_and_mc_switches(name):
  layer = _make(name, nnx.Rngs(0))
  x = _x(name)
  inference = layer(x, deterministic=True)
  first, second = layer(x), layer(x)
  assert not np.array_equal(first, second)  # the stream advances between calls
  layer.eval()
  np.testing.assert_array_equal(layer(x), inference)
  layers.set_mc(layer)
  assert layer.deterministic and layer.mc
  assert not np.array_equal(layer(x), inference)  # MC mode samples at inference
  np.testing.assert_array_equal(layer(x, deterministic=True), inference)  # explicit call wins
  layers.set_mc(layer, False)
  np.testing.assert_array_equal(layer(x), inference)


def test_mc_mode_keeps_batchnorm_in_inference_mode():
  class Net(nnx.Module):
    def __init__(self, rngs):
      self.bn = nnx.BatchNorm(8, rngs=rngs)
      self.drop = layers.Dropout(0.5, rngs=rngs)

    def __call__(self, x):
      return self.drop(self.bn(x))

  net = Net(nnx.Rngs(0))
  x = jax.random.normal(KEY, (16, 8)) * 3 + 1
  net(x)  # training step updates running statistics
  mean_before = net.bn.mean[...].copy()
  net.eval()
  layers.set_mc(net)
  assert net.bn.use_running_average
  y1, y2 = net(x), net(x)
  assert not np.array_equal(y1, y2)
  np.testing.assert_array_equal(net.bn.mean[...], mean_before)


def test_traced_rate_at_call_time_does_not_recompile():
  layer = layers.Dropout(0.5, rngs=nnx.Rngs(0))
  traces = []

  @nnx.jit
  def apply(layer, x, rate):
    traces.append(None)
    return layer(x, rate=rate)

  x = jnp.ones(1 << 14)
  fractions = [float(jnp.mean(apply(layer, x, jnp.float32(r)) == 0)) for r in (0.1, 0.5, 0.8)]
  assert len(traces) == 1
  np.testing.assert_allclose(fractions, [0.1, 0.5, 0.8], atol=0.02)


def test_classic_dropout_layer_scales_at_inference():
  layer = layers.Dropout(0.5, inverted=False, rngs=nnx.Rngs(0))
  x = jnp.full((1000,), 4.0)
  assert set(np.unique(layer(x)).tolist()) == {0.0, 4.0}
  layer.eval()
  np.testing.assert_allclose(layer(x), 2.0)


def test_sampling_without_rngs_is_a_clear_error():
  with pytest.raises(ValueError, match="has no RNG"):
    layers.Dropout(0.5)(jnp.ones(3))
  with pytest.raises(ValueError, match="`rate` must be a probability"):
    layers.Dropout(1.5)


def test_dropconnect_linear():
  layer = layers.DropConnectLinear(6, 3, 0.5, rngs=nnx.Rngs(params=0, dropout=1))
  x = jax.random.normal(KEY, (10, 6))
  y = layer(x, rngs=KEY)
  expected = dropjax.dropconnect_dense(KEY, x, layer.kernel[...], 0.5, bias=layer.bias[...])
  np.testing.assert_allclose(y, expected, rtol=1e-6)
  layer.eval()
  np.testing.assert_allclose(layer(x), x @ layer.kernel[...] + layer.bias[...], rtol=1e-6)


def test_concrete_dropout_layer_learns_its_rate():
  layer = layers.ConcreteDropout(init_rate=0.1, rngs=nnx.Rngs(0))
  np.testing.assert_allclose(layer.rate, 0.1, rtol=1e-6)
  w = jnp.ones((6, 2))

  def loss(layer):
    y = layer(jnp.ones((32, 6)))
    return jnp.sum(y @ w) + layer.regularizer(
        w, input_dim=6, weight_regularizer=1e-2, dropout_regularizer=1e-2)

  grads = nnx.grad(loss)(layer)
  g = grads["rate_logit"][...] if isinstance(grads, dict) else grads.rate_logit[...]
  assert np.isfinite(float(g)) and float(g) != 0.0


def _lstm_input_gradient(mode):
  lstm = layers.LSTM(5, 7, input_rate=0.5, state_rate=0.0, mode=mode,
                     rngs=nnx.Rngs(params=0, dropout=1))
  xs = jax.random.normal(KEY, (16, 6, 5))
  # |d sum(h_T) / d x_t| per (sequence, step, feature): zero where the input was dropped.
  grad = jax.grad(lambda xs: jnp.sum(lstm(xs, rngs=KEY)[:, -1]))(xs)
  return np.asarray(grad != 0)


def test_variational_lstm_drops_an_input_feature_at_every_step_or_none():
  nonzero = _lstm_input_gradient("variational")
  per_sequence_feature = nonzero.all(axis=1) | ~nonzero.any(axis=1)
  assert per_sequence_feature.all()
  assert 0.3 < 1 - nonzero.mean() < 0.7


def test_naive_lstm_draws_a_fresh_mask_at_every_step():
  nonzero = _lstm_input_gradient("naive")
  mixed = ~(nonzero.all(axis=1) | ~nonzero.any(axis=1))
  assert mixed.mean() > 0.5


def test_lstm_eval_equals_zero_rate_training():
  xs = jax.random.normal(KEY, (4, 6, 5))
  lstm = layers.LSTM(5, 7, input_rate=0.3, state_rate=0.3, rngs=nnx.Rngs(params=0, dropout=1))
  plain = layers.LSTM(5, 7, rngs=nnx.Rngs(params=0, dropout=1))
  lstm.eval()
  np.testing.assert_allclose(lstm(xs), plain(xs), rtol=1e-6)
  assert lstm(xs).shape == (4, 6, 7)
