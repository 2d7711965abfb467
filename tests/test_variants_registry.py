"""The variant registry: complete, read by the models and the study, open to new variants."""

import inspect

import jax
import numpy as np
import pytest
import test_layers
import test_ops_contract
from flax import nnx

from dropjax import concrete, layers, models, ops, variants
from experiments.variant_comparison import config as config_lib

# The committed variant comparison was computed with these variants and rates; the registry
# feeds its config, so a change here changes the study (and its resume refuses the old runs).
COMMITTED_VARIANTS = ("none", "dropout", "spatial", "dropblock", "gaussian", "alpha",
                      "dropconnect", "concrete", "drop_path")
COMMITTED_CONV_RATE = {"none": 0.0, "dropout": 0.1, "spatial": 0.1, "dropblock": 0.1,
                       "gaussian": 0.1, "alpha": 0.05, "dropconnect": 0.0, "concrete": 0.1,
                       "drop_path": 0.2}
COMMITTED_DENSE_RATE = {"none": 0.0, "dropout": 0.5, "spatial": 0.5, "dropblock": 0.5,
                        "gaussian": 0.5, "alpha": 0.1, "dropconnect": 0.5, "concrete": 0.1,
                        "drop_path": 0.0}


def _public_ops(module):
  """Public functions defined in ``module`` whose first parameter is a PRNG ``key``."""
  return [fn for name, fn in inspect.getmembers(module, inspect.isfunction)
          if not name.startswith("_") and fn.__module__ == module.__name__
          and list(inspect.signature(fn).parameters)[:1] == ["key"]]


@pytest.mark.parametrize("module", [ops, concrete], ids=lambda m: m.__name__)
def test_every_public_op_is_registered(module):
  found = _public_ops(module)
  assert len(found) >= 2  # the scan itself works
  missing = [fn.__name__ for fn in found if fn not in variants.registered_ops()]
  assert not missing, f"register these ops in dropjax/variants.py: {missing}"


def test_every_stochastic_layer_is_registered():
  found = [cls for _, cls in inspect.getmembers(layers, inspect.isclass)
           if issubclass(cls, layers.StochasticLayer) and cls is not layers.StochasticLayer
           and cls.__module__ == layers.__name__]
  assert layers.LSTM in found and layers.DropConnectLinear in found
  missing = [cls.__name__ for cls in found if cls not in variants.registered_layers()]
  assert not missing, f"register these layers in dropjax/variants.py: {missing}"


def test_contract_tests_cover_every_registered_op_and_layer():
  op_ids = set(test_ops_contract.CASES)
  layer_ids = set(test_layers.CASES)
  for variant in variants.REGISTRY.values():
    if variant.op is not None:
      assert variant.name in op_ids, variant.name
    if issubclass(variant.layer, layers.StochasticLayer):
      assert any(i.startswith(variant.name) for i in layer_ids), variant.name
  # The ones the hand-written lists had lost.
  assert {"dropconnect_dense", "dropconnect_dense_per_example"} <= op_ids
  assert {"dropconnect", "variational", "variational_naive"} <= layer_ids


def test_the_study_reads_the_registry_and_keeps_its_committed_settings():
  assert models.VARIANTS == variants.model_variants() == COMMITTED_VARIANTS
  config = config_lib.get_config()
  assert tuple(config.variants) == COMMITTED_VARIANTS == config_lib.VARIANTS
  assert config.conv_rate.to_dict() == COMMITTED_CONV_RATE
  assert config.dense_rate.to_dict() == COMMITTED_DENSE_RATE
  assert all(isinstance(v, float) for v in config.conv_rate.to_dict().values())


# Stochastic layers of ConvNet(channels=(8, 8)) in graph order, per variant: the layers (and
# so the RNG forks) the committed variant comparison was computed with.
CONVNET_LAYERS = {
    "none": [],
    "dropout": ["Dropout"] * 3,
    "spatial": ["Dropout"] * 2 + ["SpatialDropout"],
    "dropblock": ["Dropout"] * 2 + ["DropBlock"],
    "gaussian": ["GaussianDropout"] * 3,
    "alpha": ["AlphaDropout"] * 3,
    "dropconnect": ["DropConnectLinear"] * 2,
    "concrete": ["ConcreteDropout"] * 3,
    "drop_path": ["DropPath"] * 2,
}


@pytest.mark.parametrize("variant", COMMITTED_VARIANTS)
def test_models_build_each_variant_from_the_registry(variant):
  model = models.ConvNet(1, 10, spatial_size=8, variant=variant, conv_rate=0.2, dense_rate=0.5,
                         channels=(8, 8), dense_features=16, rngs=nnx.Rngs(0))
  found = [m for _, m in nnx.iter_modules(model) if isinstance(m, layers.StochasticLayer)]
  assert [type(m).__name__ for m in found] == CONVNET_LAYERS[variant]
  spatial = [m for m in found if isinstance(m, layers.ConcreteDropout) and m.spatial]
  assert len(spatial) == (1 if variant == "concrete" else 0)
  for block in (m for m in found if isinstance(m, layers.DropBlock)):
    assert block.shared_across_channels  # pinned study setting
    assert block.block_size == 3
  assert model(np.ones((2, 8, 8, 1), np.float32)).shape == (2, 10)
  expected = jax.nn.selu if variant == "alpha" else jax.nn.relu
  assert model.activation is expected


def test_build_applies_where_the_variant_applies():
  rngs = nnx.Rngs(0)
  assert isinstance(variants.build("dropblock", variants.DENSE_INPUT, 0.1, rngs=rngs),
                    layers.Dropout)  # its dense equivalent
  assert variants.build("dropconnect", variants.DENSE_INPUT, 0.1, rngs=rngs) is None
  assert variants.build("dropout", variants.DENSE_INPUT, 0.0, rngs=rngs) is None
  weights = variants.build("dropconnect", variants.WEIGHTS, 0.5, rngs=rngs, in_features=4,
                           out_features=3)
  assert isinstance(weights, layers.DropConnectLinear) and weights.kernel.shape == (4, 3)
  lstm = variants.build("variational", variants.RECURRENT, 0.25, rngs=rngs, in_features=4,
                        hidden_features=5)
  assert lstm.input_rate == lstm.state_rate == 0.25
  assert "variational" not in variants.model_variants()
  # A traced rate of 0 still gets a layer: one compiled program serves every rate.
  built = []
  jax.eval_shape(lambda r: built.append(
      variants.build("dropout", variants.DENSE_INPUT, r, rngs=nnx.Rngs(0))) or r, 0.0)
  assert isinstance(built[0], layers.Dropout)


def _toy_op(key, x, rate, *, deterministic=False):
  """Drops whole rows: a new variant for the test, built from an existing op."""
  return ops.dropout(key, x, rate, broadcast_dims=(1,), deterministic=deterministic)


class _ToyLayer(layers.StochasticLayer):
  def __init__(self, rate, **kwargs):
    super().__init__(**kwargs)
    self.rate = self._rate_attribute(rate)

  def __call__(self, x, *, deterministic=None, rngs=None):
    if not self._sampling(deterministic):
      return x
    return _toy_op(self._key(rngs), x, layers.value_of(self.rate))


@pytest.fixture
def toy_variant():
  entry = variants.register(variants.Variant(
      name="toy_rows", op=_toy_op, layer=_ToyLayer, placements={variants.DENSE_INPUT: {}},
      dense_rate=0.3, conv_rate=0.0, op_examples=(variants.Example((6, 4)),),
      layer_examples=(variants.Example((6, 4)),)))
  yield entry
  variants.unregister("toy_rows")


def test_a_new_variant_is_an_op_a_layer_and_one_entry(toy_variant):
  assert variants.model_variants()[-1] == "toy_rows"
  model = models.MLP(4, [8], 2, variant="toy_rows", input_rate=0.3, hidden_rate=0.3,
                     rngs=nnx.Rngs(0))
  assert [type(d).__name__ for d in model.drops] == ["_ToyLayer"] * 2
  # The contract lists pick it up without edits.
  assert "toy_rows" in test_ops_contract._op_cases()
  assert "toy_rows" in test_layers._layer_cases()
  layer = toy_variant.build_layer(0.3, rngs=nnx.Rngs(0))
  x = np.ones((6, 4), np.float32)
  np.testing.assert_array_equal(
      layer(x, rngs=test_layers.KEY),
      toy_variant.layer_reference(layer, test_layers.KEY, x, toy_variant.layer_examples[0]))
  assert config_lib.get_config().variants[-1] == "toy_rows"


def test_unregistered_variant_is_gone_from_the_models(toy_variant):
  variants.unregister("toy_rows")
  with pytest.raises(ValueError, match="`variant` must be one of"):
    models.MLP(4, [8], 2, variant="toy_rows", rngs=nnx.Rngs(0))
  variants.register(toy_variant)  # for the fixture's teardown
