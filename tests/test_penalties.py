"""The penalty protocol: any module's ``penalty()`` enters the loss, the same sum as before."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from dropjax import layers
from dropjax.data import Split, load_digits
from dropjax.models import MLP, ConvNet, concrete_regularization
from dropjax.penalties import collect_penalties, module_penalties
from dropjax.train import classification_loss, fit_classifier, fit_ensemble


class Scaled(nnx.Module):
  """A linear layer whose penalty is ``coefficient * sum(kernel**2)``."""

  def __init__(self, din, dout, coefficient, *, rngs):
    self.linear = nnx.Linear(din, dout, rngs=rngs)
    self.coefficient = coefficient

  def __call__(self, x):
    return self.linear(x)

  def penalty(self):
    return self.coefficient * jnp.sum(self.linear.kernel[...] ** 2)


class Net(nnx.Module):
  """Two penalised layers inside a model that has a penalty of its own."""

  def __init__(self, *, rngs, own=0.5):
    self.first = Scaled(64, 16, 1e-2, rngs=rngs)
    self.second = Scaled(16, 10, 1e-3, rngs=rngs)
    self.own = own

  def __call__(self, x):
    return self.second(jax.nn.relu(self.first(x.reshape(x.shape[0], -1))))

  def penalty(self):
    return jnp.asarray(self.own)


def test_collect_penalties_sums_every_module_root_included_in_graph_order():
  net = Net(rngs=nnx.Rngs(0))
  paths = [path for path, _ in module_penalties(net)]
  assert paths == [("first",), ("second",), ()]  # nnx.iter_modules order, the root last
  expected = net.first.penalty() + net.second.penalty() + net.penalty()
  np.testing.assert_array_equal(collect_penalties(net), expected)
  assert float(expected) > 0.5
  np.testing.assert_array_equal(jax.jit(lambda m: collect_penalties(m))(net), expected)


def test_no_penalty_is_zero():
  plain = nnx.Sequential(nnx.Linear(3, 2, rngs=nnx.Rngs(0)), layers.Dropout(0.5))
  total = collect_penalties(plain)
  assert total.shape == () and float(total) == 0.0
  assert module_penalties(plain) == []


def test_gradients_flow_through_the_penalty():
  net = Net(rngs=nnx.Rngs(0))
  grads = nnx.grad(collect_penalties)(net)
  kernel = net.first.linear.kernel[...]
  np.testing.assert_allclose(grads["first"]["linear"]["kernel"][...], 2e-2 * kernel, rtol=1e-6)


def _old_loss(model, x, y, pairs, wr, dr):
  """The loss before the protocol: cross-entropy + ``model.regularization(wr, dr)``, which
  was the sum over ``pairs(model)``."""
  ce = optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()
  return ce + concrete_regularization(pairs(model), wr, dr)


def _mlp_pairs(model):
  return list(zip(model.drops, model.denses, model.input_dims, strict=True))


def _convnet_pairs(model):
  pairs = [*zip(model.drops, model.convs, strict=True), (model.dense_drops[0], model.dense1),
           (model.dense_drops[1], model.dense2)]
  return [(d, w, k) for (d, w), k in zip(pairs, model.pairs_input_dims, strict=True)]


@pytest.mark.parametrize("kind", ["mlp", "convnet"])
def test_loss_is_bitwise_the_old_formula_on_a_concrete_model(kind):
  wr, dr = 0.1**2 / 1000, 1.0 / 1000
  if kind == "mlp":
    model = MLP(64, [32, 32], 10, variant="concrete", weight_regularizer=wr,
                dropout_regularizer=dr, rngs=nnx.Rngs(params=0, dropout=1))
    pairs = _mlp_pairs
  else:
    model = ConvNet(1, 10, spatial_size=8, variant="concrete", channels=(8, 8),
                    dense_features=16, weight_regularizer=wr, dropout_regularizer=dr,
                    rngs=nnx.Rngs(params=0, dropout=1))
    pairs = _convnet_pairs
  x = jax.random.uniform(jax.random.key(2), (8, 8, 8, 1))
  y = jnp.arange(8) % 10
  assert float(concrete_regularization(pairs(model), wr, dr)) != 0.0
  model.eval()  # the same masks in both: none
  new, old = classification_loss(model, x, y), _old_loss(model, x, y, pairs, wr, dr)
  np.testing.assert_array_equal(new, old)
  new_grad = nnx.grad(lambda m: classification_loss(m, x, y))(model)
  old_grad = nnx.grad(lambda m: _old_loss(m, x, y, pairs, wr, dr))(model)
  for a, b in zip(jax.tree.leaves(new_grad), jax.tree.leaves(old_grad), strict=True):
    np.testing.assert_array_equal(a, b)
  jitted = nnx.jit(lambda m: (classification_loss(m, x, y), _old_loss(m, x, y, pairs, wr, dr)))
  new_jit, old_jit = jitted(model)
  np.testing.assert_array_equal(new_jit, old_jit)


def test_models_penalise_only_concrete_layers_with_their_coefficients():
  dropout = MLP(64, [32], 10, weight_regularizer=1.0, dropout_regularizer=1.0, rngs=nnx.Rngs(0))
  assert float(dropout.penalty()) == 0.0
  concrete = MLP(64, [32], 10, variant="concrete", rngs=nnx.Rngs(0))
  assert float(concrete.penalty()) == 0.0  # coefficients default to 0
  assert concrete.weight_regularizer == 0.0 and isinstance(concrete.weight_regularizer, float)
  weighted = MLP(64, [32], 10, variant="concrete", weight_regularizer=np.float32(1e-2),
                 dropout_regularizer=0.0, rngs=nnx.Rngs(0))
  assert type(weighted.weight_regularizer) is float
  assert float(weighted.penalty()) > 0.0


DATA = load_digits()
SMALL = Split(DATA.train.images[:128], DATA.train.labels[:128])


def test_fit_classifier_trains_against_a_users_penalty():
  def train(own_coefficient):
    model = Net(rngs=nnx.Rngs(0))
    model.first.coefficient = own_coefficient
    history = fit_classifier(model, SMALL, key=jax.random.key(0), epochs=3, batch_size=32,
                             learning_rate=1e-2)
    return model, history

  free, free_history = train(0.0)
  shrunk, shrunk_history = train(1.0)
  norm = lambda m: float(jnp.sum(m.first.linear.kernel[...] ** 2))
  assert norm(shrunk) < 0.5 * norm(free)
  assert shrunk_history["loss"][0] > free_history["loss"][0]  # the penalty is in the loss


def test_fit_ensemble_adds_the_penalties_of_its_members():
  keys = jax.random.split(jax.random.key(1), 2)

  def make(coefficient):
    def build(rngs):
      model = Net(rngs=rngs, own=0.0)
      model.first.coefficient = coefficient
      return model
    return build

  _, (free, _), _ = fit_ensemble(make(0.0), SMALL, keys=keys, epochs=2, batch_size=32,
                                 learning_rate=1e-2)
  _, (shrunk, _), _ = fit_ensemble(make(1.0), SMALL, keys=keys, epochs=2, batch_size=32,
                                   learning_rate=1e-2)
  norm = lambda params: jnp.sum(params["first"]["linear"]["kernel"][...] ** 2, axis=(1, 2))
  assert bool(jnp.all(norm(shrunk) < 0.5 * norm(free)))
