"""Bad inputs to the variant registry and the penalty protocol (rows of `test_bad_inputs.py`)."""

import jax
import jax.numpy as jnp
from bad_input_case import Case
from flax import nnx

import dropjax.train
from dropjax import layers, ops, variants
from dropjax.models import MLP, ConvNet
from dropjax.penalties import collect_penalties


def _entry(**changes):
  fields = dict(name="bad_entry", op=ops.dropout, layer=layers.Dropout,
                placements={variants.DENSE_INPUT: {}}, op_examples=(variants.Example((2, 3)),),
                layer_examples=(variants.Example((2, 3)),))
  return variants.Variant(**{**fields, **changes})


class _VectorPenalty(nnx.Module):
  def penalty(self):
    return jnp.ones(3)


class _PenaltyAttribute(nnx.Module):
  def __init__(self):
    self.penalty = 0.1


def _mlp(**kwargs):
  return MLP(4, [4], 2, variant="concrete", rngs=nnx.Rngs(0), **kwargs)


CASES = [
    Case("variants-unknown-name", lambda: variants.get("dropit"), ValueError,
         ["`variant`", "dropit", "dropout", "dropblock", "concrete"]),
    Case("variants-duplicate-name", lambda: variants.register(_entry(name="dropout")),
         ValueError, ["already registered", "'dropout'", "unregister"]),
    Case("variants-unknown-placement",
         lambda: variants.register(_entry(placements={"dense": {}})), ValueError,
         ["placements", "'dense'", "dense_input", "feature_maps", "weights", "residual",
          "recurrent"]),
    Case("variants-bad-dense-equivalent",
         lambda: variants.register(_entry(dense_equivalent="drop_path")), ValueError,
         ["dense_equivalent", "drop_path", "dense_input"]),
    Case("variants-rate-default-out-of-range",
         lambda: variants.register(_entry(dense_rate=1.5)), ValueError,
         ["dense_rate", "[0, 1)", "1.5"]),
    Case("variants-op-without-examples",
         lambda: variants.register(_entry(op_examples=())), ValueError,
         ["op_examples", "op contract"]),
    Case("variants-layer-without-examples",
         lambda: variants.register(_entry(layer_examples=())), ValueError,
         ["layer_examples", "layer contract"]),
    Case("variants-not-an-entry", lambda: variants.register("dropout"), TypeError,
         ["`variant`", "Variant", "str"]),
    Case("variants-build-unknown-placement",
         lambda: variants.build("dropout", "dense", 0.1, rngs=nnx.Rngs(0)), ValueError,
         ["`placement`", "'dense'", "dense_input", "recurrent"]),
    Case("variants-build-missing-sizes",
         lambda: variants.build("dropconnect", variants.WEIGHTS, 0.5, rngs=nnx.Rngs(0)),
         ValueError, ["dropconnect", "weights", "in_features", "out_features"]),
    Case("variants-build-missing-block-size",
         lambda: variants.build("dropblock", variants.FEATURE_MAPS, 0.1, rngs=nnx.Rngs(0)),
         ValueError, ["dropblock", "feature_maps", "block_size"]),
    Case("variants-unregister-unknown", lambda: variants.unregister("dropit"), ValueError,
         ["`variant`", "dropit", "dropout"]),
    Case("variants-model-unknown-variant",
         lambda: ConvNet(1, 10, spatial_size=8, variant="variational", rngs=nnx.Rngs(0)),
         ValueError, ["`variant`", "variational", "dropout", "drop_path"]),
    Case("variants-penalty-coefficient-negative", lambda: _mlp(weight_regularizer=-1e-4),
         ValueError, ["weight_regularizer", ">= 0", "-0.0001"]),
    Case("variants-penalty-coefficient-nan", lambda: _mlp(dropout_regularizer=float("nan")),
         ValueError, ["dropout_regularizer", "finite", "nan"]),
    Case("variants-penalty-coefficient-not-a-number", lambda: _mlp(weight_regularizer="1e-4"),
         TypeError, ["weight_regularizer", "python float", "'1e-4'"]),
    Case("variants-penalty-coefficient-array", lambda: _mlp(weight_regularizer=jnp.ones(2)),
         TypeError, ["weight_regularizer", "python float"]),
    Case("variants-penalty-coefficient-traced",
         lambda: jax.eval_shape(lambda w: _mlp(weight_regularizer=w) and w, 1e-4), TypeError,
         ["weight_regularizer", "traced", "python float"]),
    Case("variants-penalty-not-scalar", lambda: collect_penalties(_VectorPenalty()),
         ValueError, ["penalty()", "_VectorPenalty", "scalar", "(3,)"]),
    Case("variants-penalty-not-a-method", lambda: collect_penalties(_PenaltyAttribute()),
         TypeError, ["`penalty`", "_PenaltyAttribute", "not a method", "penalty(self)"]),
    Case("variants-fit-classifier-old-regularizer-keywords",
         lambda: dropjax.train.fit_classifier(
             _mlp(), None, key=jax.random.key(0), epochs=1, batch_size=1, learning_rate=1e-3,
             weight_regularizer=1e-4),
         TypeError, ["weight_regularizer"]),
]
