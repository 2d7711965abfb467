"""MC dropout, mode checks and conversions on models built only from `flax.nnx` layers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import dropjax
from dropjax import layers
from dropjax.concrete import concrete_dropout_regularizer
from dropjax.mc import mc_sample, module_forward
from dropjax.train import predict_probabilities


class FlaxNet(nnx.Module):
  """Linear -> BatchNorm -> relu -> Dropout -> Linear, nothing from dropjax."""

  def __init__(self, *, rate=0.5, dropout_rngs=True, rngs):
    self.dense1 = nnx.Linear(5, 16, rngs=rngs)
    self.norm = nnx.BatchNorm(16, rngs=rngs)
    self.drop = nnx.Dropout(rate, rngs=rngs if dropout_rngs else None)
    self.dense2 = nnx.Linear(16, 3, rngs=rngs)

  def __call__(self, x):
    return self.dense2(self.drop(jax.nn.relu(self.norm(self.dense1(x)))))


def _net(**kwargs):
  model = FlaxNet(rngs=nnx.Rngs(0), **kwargs)
  # Running statistics far from the batch's: BatchNorm in training mode would be obvious.
  model.norm.mean[...] = jnp.full((16,), 0.3)
  model.norm.var[...] = jnp.full((16,), 4.0)
  return model


X = jax.random.normal(jax.random.key(1), (6, 5))


@pytest.mark.parametrize("dropout_rngs", [True, False])
def test_mc_samples_flax_dropout_with_batchnorm_in_inference_mode(dropout_rngs):
  model = _net(dropout_rngs=dropout_rngs)
  forward = module_forward(model)
  samples = mc_sample(forward, jax.random.key(2), X, 4000, chunk_size=1000)
  assert float(samples.std(0).min()) > 1e-3  # the samples differ (they were equal before)
  # Sample i is forward(fold_in(key, i)).
  np.testing.assert_array_equal(samples[7], forward(jax.random.fold_in(jax.random.key(2), 7), X))
  # E[sample] is the eval-mode output, up to 5 standard errors: BatchNorm used its running
  # statistics and inverted dropout is unbiased.
  model.eval()
  expected = model(X)
  se = samples.std(0) / np.sqrt(samples.shape[0])
  assert bool(jnp.all(jnp.abs(samples.mean(0) - expected) <= 5 * se + 1e-6))
  # The caller's model is left as it was.
  assert model.drop.deterministic and model.norm.use_running_average


def test_flax_model_chunked_equals_unchunked_and_is_deterministic():
  forward = module_forward(_net())
  whole = mc_sample(forward, jax.random.key(3), X, 12)
  np.testing.assert_array_equal(mc_sample(forward, jax.random.key(3), X, 12, chunk_size=5), whole)
  # Under jit XLA fuses BatchNorm differently: the same masks, values to rounding.
  np.testing.assert_allclose(jax.jit(lambda k: mc_sample(forward, k, X, 12))(
      jax.random.key(3)), whole, rtol=1e-5, atol=1e-6)


def test_stochastic_layers_reports_each_mode():
  model = _net()
  model.train()
  report = layers.stochastic_layers(model)
  assert [(m.path, m.layer, m.rate, m.sampling, m.flax) for m in report] == [
      ("drop", "Dropout", 0.5, True, True)]
  model.eval()
  assert [m.sampling for m in layers.stochastic_layers(model)] == [False]
  layers.set_mc(model)
  assert [m.sampling for m in layers.stochastic_layers(model)] == [True]
  ours = nnx.Sequential(layers.Dropout(0.2, rngs=nnx.Rngs(0)), nnx.Dropout(0.1))
  ours.eval()
  layers.set_mc(ours)
  report = layers.stochastic_layers(ours)
  assert [(m.path, m.flax, m.sampling) for m in report] == [
      ("layers/0", False, True), ("layers/1", True, True)]


def test_check_sampling_names_the_layers_in_the_wrong_mode():
  model = _net()
  model.eval()
  layers.check_sampling(model, False, context="here")
  with pytest.raises(ValueError, match=r"here: .*drop \(Dropout, sampling=False\)"):
    layers.check_sampling(model, True, context="here")


def test_predict_probabilities_refuses_mc_mode_and_accepts_eval():
  model = nnx.Sequential(nnx.Linear(5, 3, rngs=nnx.Rngs(0)), layers.Dropout(0.5, rngs=nnx.Rngs(1)))
  probs = predict_probabilities(model, X)
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
  layers.set_mc(model)
  with pytest.raises(ValueError, match="would sample"):
    predict_probabilities(model, X)


def test_replace_dropout_keeps_parameters_and_positions():
  model = _net()
  before = jax.tree.map(np.asarray, nnx.state(model, nnx.Param))
  model = layers.replace_dropout(
      model, lambda d: layers.GaussianDropout(d.rate, rngs=d.rngs))
  assert isinstance(model.drop, layers.GaussianDropout) and model.drop.rate == 0.5
  after = jax.tree.map(np.asarray, nnx.state(model, nnx.Param))
  jax.tree.map(np.testing.assert_array_equal, before, after)
  # The new layer is the op: same output for the same key.
  h = jnp.ones((2, 16))
  key = jax.random.key(4)
  np.testing.assert_array_equal(model.drop(h, rngs=key), dropjax.gaussian_dropout(key, h, 0.5))
  # Inside containers too, and the train/eval flag carries over.
  seq = nnx.Sequential(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), nnx.Dropout(0.3, deterministic=True))
  seq = layers.replace_dropout(seq, lambda d: layers.Dropout(d.rate))
  assert isinstance(seq.layers[1], layers.Dropout) and seq.layers[1].deterministic


def test_concrete_wrapper_penalty_is_the_reference_formula_and_is_collected():
  from dropjax.penalties import collect_penalties

  class Net(nnx.Module):
    def __init__(self, rngs):
      self.fc1 = nnx.Linear(5, 8, rngs=rngs)
      self.fc2 = layers.ConcreteDropoutWrapper(
          nnx.Linear(8, 3, rngs=rngs), weight_regularizer=1e-3, dropout_regularizer=1e-2,
          init_rate=0.2, rngs=rngs)

    def __call__(self, x):
      return self.fc2(jax.nn.relu(self.fc1(x)))

  model = Net(nnx.Rngs(0))
  expected = concrete_dropout_regularizer(
      model.fc2.layer.kernel[...], 0.2, input_dim=8, weight_regularizer=1e-3,
      dropout_regularizer=1e-2)
  np.testing.assert_allclose(collect_penalties(model), expected, rtol=1e-5)
  # The penalty trains the rate: its gradient reaches the rate logit.
  grads = nnx.grad(lambda m: collect_penalties(m))(model)
  assert float(jnp.abs(grads["fc2"]["dropout"]["rate_logit"][...])) > 0
  assert module_forward(model)(jax.random.key(0), X).shape == (6, 3)
