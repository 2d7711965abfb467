"""LoRA with dropout: the frozen path, the dropped update, what training touches."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from dropjax import layers, train
from dropjax.models import LORA_TARGETS, TransformerClassifier


def _identity_update(features, rate, seed=0):
  """A LoRALinear whose base is 0 and whose update is the identity: it outputs
  ``dropout(x)`` itself."""
  base = nnx.Linear(features, features, kernel_init=nnx.initializers.zeros, rngs=nnx.Rngs(0))
  layer = layers.LoRALinear(base, features, rate=rate, rngs=nnx.Rngs(params=0, dropout=seed))
  layer.lora_a[...] = jnp.eye(features)
  layer.lora_b[...] = jnp.eye(features)
  return layer


def test_a_new_adapter_is_the_base_layer_and_eval_adds_the_scaled_update():
  base = nnx.Linear(6, 3, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (5, 6))
  expected = base(x)
  layer = layers.LoRALinear(base, 2, rate=0.5, alpha=8.0, rngs=nnx.Rngs(2))
  np.testing.assert_array_equal(layer(x), expected)  # lora_b starts at 0
  assert np.abs(layer.lora_a[...]).max() <= 1 / np.sqrt(6)
  layer.lora_b[...] = jax.random.normal(jax.random.key(3), (2, 3))
  layer.eval()
  np.testing.assert_allclose(layer(x), expected + 4.0 * x @ layer.lora_a[...] @ layer.lora_b[...],
                             rtol=1e-5, atol=1e-6)


def test_lora_dropout_drops_the_update_input_at_its_rate_and_keeps_its_mean():
  """The realised rate and E[y] = x within 5 standard errors (n = 200,000 entries)."""
  rate, n = 0.1, 200_000
  layer = _identity_update(100, rate)
  x = jnp.ones((n // 100, 100))
  y = np.asarray(layer(x))
  dropped = (y == 0).mean()
  assert abs(dropped - rate) <= 5 * np.sqrt(rate * (1 - rate) / n)
  se = np.sqrt(rate / (1 - rate) / n)  # the std of 1/(1-p) * Bernoulli(1-p), per entry
  assert abs(y.mean() - 1.0) <= 5 * se


def test_the_frozen_path_never_sees_the_dropout():
  base = nnx.Linear(8, 4, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (64, 8))
  expected = base(x)
  layer = layers.LoRALinear(base, 3, rate=0.9, rngs=nnx.Rngs(2))  # lora_b = 0
  np.testing.assert_array_equal(layer(x), expected)


def test_vmapped_rates_equal_separate_layers():
  rates = jnp.array([0.0, 0.05, 0.3])
  x = jnp.ones((16, 20))

  def output(rate):
    return _identity_update(20, rate, seed=5)(x)

  batched = jax.vmap(output)(rates)
  for i, rate in enumerate(rates):
    np.testing.assert_array_equal(batched[i], output(rate))


def test_training_moves_only_the_adapters_and_the_kept_head():
  model = TransformerClassifier(8, 3, max_length=8, features=16, num_heads=2, num_blocks=1,
                                rngs=nnx.Rngs(0))
  model = layers.add_lora(model, LORA_TARGETS, rank=2, rate=0.1, trainable=("head",),
                          rngs=nnx.Rngs(1))
  def flat(kind):
    return {"/".join(map(str, k)): np.asarray(v[...])
            for k, v in nnx.to_flat_state(nnx.state(model, kind))}

  frozen_before, params_before = flat(layers.Frozen), flat(nnx.Param)
  x = jax.random.normal(jax.random.key(2), (32, 8, 8))
  labels = jnp.arange(32) % 3
  train.fit(model, (x, labels), key=jax.random.key(3), epochs=2, batch_size=8,
            tx=optax.adam(1e-2))
  frozen_after, params_after = flat(layers.Frozen), flat(nnx.Param)
  assert frozen_after.keys() == frozen_before.keys() and len(frozen_before) > 10
  for name, value in frozen_before.items():
    np.testing.assert_array_equal(frozen_after[name], value, err_msg=name)
  unmoved = [k for k, v in params_before.items() if np.array_equal(params_after[k], v)]
  assert not unmoved
  assert {k.split("/")[-1] for k in params_before} == {"lora_a", "lora_b", "kernel", "bias"}
  assert all(k.startswith("head/") or "lora_" in k for k in params_before)


def test_add_lora_wraps_every_target_in_every_block():
  model = TransformerClassifier(8, 3, max_length=8, features=16, num_heads=2, num_blocks=2,
                                rngs=nnx.Rngs(0))
  layers.add_lora(model, ("qkv", "ffn2"), rank=2, rngs=nnx.Rngs(1))
  wrapped = [p for p, m in nnx.iter_modules(model) if isinstance(m, layers.LoRALinear)]
  assert sorted(map(tuple, wrapped)) == [("blocks", 0, "attention", "qkv"),
                                         ("blocks", 0, "ffn2"),
                                         ("blocks", 1, "attention", "qkv"),
                                         ("blocks", 1, "ffn2")]
  assert not jax.tree.leaves(nnx.state(model.head, nnx.Param))  # nothing kept: all frozen


@pytest.mark.parametrize("kwargs, error, match", [
    ({"targets": ("query",)}, ValueError, r"match no nnx.Linear of TransformerClassifier; "
                                          r"its linear layers are named \['embed', 'ffn1'"),
    ({"targets": ()}, ValueError, "`targets` must name at least one"),
    ({"rank": 0}, ValueError, "`rank` must be a positive int"),
    ({"alpha": -1.0}, ValueError, "`alpha` must be a positive number"),
    ({"rate": 1.5}, ValueError, "rate"),
    ({"trainable": ("classifier",)}, ValueError, r"`trainable` \('classifier',\) match no"),
    ({"trainable": ("attention",)}, ValueError,
     r"LoRA `targets` \['blocks/0/attention/qkv'\] sit inside a `trainable` module"),
])
def test_bad_lora_settings_are_refused_by_name(kwargs, error, match):
  model = TransformerClassifier(8, 3, max_length=8, features=16, num_heads=2, num_blocks=1,
                                rngs=nnx.Rngs(0))
  settings = {"targets": ("qkv",), "rank": 2, **kwargs}
  before = nnx.state(model, nnx.Param)
  with pytest.raises(error, match=match):
    layers.add_lora(model, settings.pop("targets"), rngs=nnx.Rngs(1), **settings)
  # Refused before anything changed: no weight frozen, no layer wrapped.
  paths = lambda state: [path for path, _ in nnx.to_flat_state(state)]
  assert paths(nnx.state(model, nnx.Param)) == paths(before)
  assert not [m for _, m in nnx.iter_modules(model) if isinstance(m, layers.LoRALinear)]


def test_new_adapters_take_the_models_mode():
  model = TransformerClassifier(8, 3, max_length=8, features=16, num_heads=2, num_blocks=1,
                                rngs=nnx.Rngs(0))
  model.eval()
  layers.add_lora(model, ("qkv",), rank=2, rate=0.5, rngs=nnx.Rngs(1))
  assert not any(m.sampling for m in layers.stochastic_layers(model))
  layers.set_mc(model)
  layers.add_lora(model, ("ffn1",), rank=2, rate=0.5, rngs=nnx.Rngs(1))
  assert all(m.sampling for m in layers.stochastic_layers(model))


def test_lora_linear_needs_a_linear_base():
  with pytest.raises(TypeError, match=r"`base` must be an nnx\.Linear; got Conv"):
    layers.LoRALinear(nnx.Conv(1, 2, (3, 3), rngs=nnx.Rngs(0)), 2, rngs=nnx.Rngs(0))
