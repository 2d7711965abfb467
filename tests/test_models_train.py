"""Data, models and the training loop: every variant trains; same seed, same numbers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dropjax.data import load_digits
from dropjax.models import MLP, VARIANTS, ConvNet
from dropjax.train import classification_loss, fit_classifier


def test_digits_split_is_stratified_disjoint_and_reproducible():
  data = load_digits(seed=0)
  sizes = [len(s.labels) for s in (data.train, data.validation, data.test)]
  assert sum(sizes) == 1797 and data.train.images.shape[1:] == (8, 8, 1)
  assert data.train.images.dtype == np.float32 and 0 <= data.train.images.min()
  assert data.train.images.max() <= 1
  keys = [{x.tobytes() for x in s.images} for s in (data.train, data.validation, data.test)]
  assert not (keys[0] & keys[2]) and not (keys[1] & keys[2])
  assert np.all(np.bincount(data.test.labels, minlength=10) >= 40)
  again = load_digits(seed=0)
  np.testing.assert_array_equal(again.test.images, data.test.images)
  with pytest.raises(ValueError, match="`test_fraction`"):
    load_digits(test_fraction=1.5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_one_training_step_of_each_model_with_each_variant(variant):
  data = load_digits()
  batch = data.train.images[:16], data.train.labels[:16]
  for model in (
      ConvNet(1, 10, spatial_size=8, variant=variant, channels=(8, 8), dense_features=16,
              weight_regularizer=1e-4, dropout_regularizer=1e-3,
              rngs=nnx.Rngs(params=0, dropout=1)),
      MLP(64, [32, 32], 10, variant=variant, weight_regularizer=1e-4, dropout_regularizer=1e-3,
          rngs=nnx.Rngs(params=0, dropout=1)),
  ):
    before = jax.tree.map(jnp.copy, nnx.state(model, nnx.Param))
    history = fit_classifier(model, type(data.train)(*batch), key=jax.random.key(0), epochs=1,
                             batch_size=16, learning_rate=1e-2)
    assert np.isfinite(history["loss"][0]) and history["steps"] == 1
    after = nnx.state(model, nnx.Param)
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), before, after)
    assert all(jax.tree.leaves(changed))


def test_concrete_variant_penalty_enters_the_loss():
  make = lambda c: MLP(64, [32], 10, variant="concrete", weight_regularizer=c,
                       dropout_regularizer=c, rngs=nnx.Rngs(params=0, dropout=1))
  x, y = jnp.ones((4, 64)), jnp.zeros(4, jnp.int32)
  plain_model, penalised_model = make(0.0), make(1e-2)
  plain_model.eval()
  penalised_model.eval()
  plain = classification_loss(plain_model, x, y)
  penalised = classification_loss(penalised_model, x, y)
  expected = penalised_model.penalty()
  np.testing.assert_allclose(penalised - plain, expected, rtol=1e-5)


def test_same_seed_gives_bitwise_identical_training():
  data = load_digits()

  def run(seed):
    model = ConvNet(1, 10, spatial_size=8, variant="dropblock", channels=(8, 8),
                    dense_features=16, rngs=nnx.Rngs(params=0, dropout=1))
    fit_classifier(model, data.train, key=jax.random.key(seed), epochs=1, batch_size=128,
                   learning_rate=1e-3)
    return jax.tree.leaves(nnx.state(model, nnx.Param))

  a, b, c = run(0), run(0), run(1)
  for x, y in zip(a, b, strict=True):
    np.testing.assert_array_equal(x, y)
  assert any(not np.array_equal(x, z) for x, z in zip(a, c, strict=True))


def test_unknown_variant_is_a_clear_error():
  with pytest.raises(ValueError, match="`variant` must be one of"):
    MLP(4, [4], 2, variant="dropit", rngs=nnx.Rngs(0))
