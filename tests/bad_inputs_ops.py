"""Bad inputs to the ops, the layers and MC sampling (rows of `test_bad_inputs.py`)."""

import jax
import jax.numpy as jnp
from bad_input_case import Case
from flax import nnx

import dropjax
import dropjax.train
from dropjax import layers, prng
from dropjax.mc import mc_running_means, mc_sample, module_forward

_MESH = jax.sharding.Mesh(jax.devices()[:1], ("samples",))

K = jax.random.key(0)
X = jnp.ones((4, 3))
MAPS = jnp.ones((2, 6, 6, 3))
_identity = lambda k, x: x


class _NoDropout(nnx.Module):
  def __init__(self):
    self.dense = nnx.Linear(3, 2, rngs=nnx.Rngs(0))

  def __call__(self, x):
    return self.dense(x)


def _mc_mode_model():
  model = nnx.Sequential(nnx.Linear(3, 2, rngs=nnx.Rngs(0)), layers.Dropout(0.5, rngs=nnx.Rngs(1)))
  model.eval()
  layers.set_mc(model)
  return model


CASES = [
    Case("prng-unknown-impl", lambda: prng.key(0, "philox"), ValueError,
         ["impl", "'philox'", "keyed_hash", "threefry2x32"]),
    Case("prng-too-many-words",
         lambda: prng.keyed_hash_words(jax.random.key_data(jax.random.key(0)), 2**32 + 1),
         ValueError, ["num_words", "2**32", "split the key"]),
    Case("ops-rate-negative", lambda: dropjax.dropout(K, X, -0.1), ValueError,
         ["`rate`", "[0, 1]", "-0.1"]),
    Case("ops-rate-above-one", lambda: dropjax.dropout(K, X, 1.5), ValueError,
         ["`rate`", "[0, 1]"]),
    Case("ops-rate-nan", lambda: dropjax.dropout(K, X, float("nan")), ValueError,
         ["`rate`", "[0, 1]"]),
    Case("ops-rate-is-keep-probability-array", lambda: dropjax.gaussian_dropout(
        K, X, jnp.array([0.2, 1.2, 0.3])), ValueError, ["`rate`", "[0, 1]"]),
    Case("ops-haiku-argument-order", lambda: dropjax.dropout(K, 0.1, X * 0.5), ValueError,
         ["`rate`", "does not broadcast", "(key, x, rate)"]),
    Case("ops-rate-shape-mismatch", lambda: dropjax.dropout(K, X, jnp.full((5,), 0.1)),
         ValueError, ["`rate`", "(5,)", "(4, 3)"]),
    Case("ops-key-and-x-swapped", lambda: dropjax.dropout(X, K, 0.1), TypeError,
         ["`x`", "prng key", "(key, x, rate)"]),
    Case("ops-key-is-float-data", lambda: dropjax.dropout(jnp.ones(2), X, 0.1), TypeError,
         ["`key`", "jax.random.key", "float32"]),
    Case("ops-key-is-int", lambda: dropjax.alpha_dropout(3, X, 0.1), TypeError,
         ["`key`", "prng key"]),
    Case("ops-integer-input", lambda: dropjax.dropout(K, jnp.full((8,), 3, jnp.int32), 0.3),
         TypeError, ["`x`", "floating-point", "int32"]),
    Case("ops-boolean-input", lambda: dropjax.spatial_dropout(K, MAPS > 0, 0.3), TypeError,
         ["`x`", "floating-point", "bool"]),
    Case("ops-integer-input-concrete", lambda: dropjax.concrete_dropout(
        K, jnp.ones(4, jnp.int32), 0.3), TypeError, ["`x`", "floating-point"]),
    Case("ops-dropout-mask-integer-dtype", lambda: dropjax.dropout_mask(
        K, (3,), 0.5, dtype=jnp.int32), TypeError, ["`dtype`", "floating-point"]),
    Case("ops-channel-axis-float", lambda: dropjax.spatial_dropout(K, MAPS, 0.1, channel_axis=1.0),
         TypeError, ["`channel_axis`", "int", "1.0"]),
    Case("ops-channel-axis-out-of-range", lambda: dropjax.spatial_dropout(
        K, MAPS, 0.1, channel_axis=4), ValueError, ["`channel_axis`", "-4..3"]),
    Case("ops-broadcast-dims-repeated", lambda: dropjax.dropout(
        K, MAPS, 0.1, broadcast_dims=(1, -3)), ValueError, ["`broadcast_dims`", "repeats"]),
    Case("ops-spatial-wrong-rank", lambda: dropjax.spatial_dropout(K, X, 0.1), ValueError,
         ["spatial_dropout", "rank 3 or 4 or 5", "(4, 3)"]),
    Case("ops-dropblock-block-too-large", lambda: dropjax.dropblock(K, MAPS, 0.1, block_size=7),
         ValueError, ["`block_size`", "at most 6"]),
    Case("ops-dropblock-block-size-float", lambda: dropjax.dropblock(
        K, MAPS, 0.1, block_size=2.5), ValueError, ["`block_size`", "positive integer"]),
    Case("ops-dropblock-data-format", lambda: dropjax.dropblock(
        K, MAPS, 0.1, block_size=3, data_format="NWHC"), ValueError, ["`data_format`", "NCHW"]),
    Case("ops-dropblock-shared-not-bool", lambda: dropjax.dropblock(
        K, MAPS, 0.1, block_size=3, shared_across_channels="no"), TypeError,
         ["`shared_across_channels`", "True or False"]),
    Case("ops-bits-not-allowed", lambda: dropjax.dropout(K, X, 0.5, bits=3), ValueError,
         ["`bits`", "(1, 2, 4, 8, 16, 32)"]),
    Case("ops-concrete-temperature-zero", lambda: dropjax.concrete_dropout(
        K, X, 0.2, temperature=0.0), ValueError, ["`temperature`", "positive"]),
    Case("ops-dropconnect-kernel-rank", lambda: dropjax.dropconnect_dense(
        K, X, jnp.ones((3, 2, 1)), 0.2), ValueError, ["`kernel`", "(in, out)"]),
    Case("ops-per-depth-rates-count-float", lambda: dropjax.per_depth_rates(2.5, 0.1, 0.2),
         ValueError, ["`num_layers`", "positive integer"]),
    Case("layers-rngs-wrong-type", lambda: layers.Dropout(0.5, rngs=0), TypeError,
         ["`rngs`", "nnx.Rngs"]),
    Case("layers-call-key-not-a-key", lambda: layers.Dropout(0.5)(X, rngs=jnp.ones(2)), TypeError,
         ["`rngs`", "prng key"]),
    Case("layers-rate-out-of-range", lambda: layers.SpatialDropout(1.2), ValueError,
         ["`rate`", "[0, 1]"]),
    Case("layers-lstm-mode", lambda: layers.LSTM(3, 4, mode="gal", rngs=nnx.Rngs(0)), ValueError,
         ["`mode`", "variational", "naive"]),
    Case("layers-concrete-init-rate-zero", lambda: layers.ConcreteDropout(init_rate=0.0),
         ValueError, ["`init_rate`", "strictly between 0 and 1"]),
    Case("layers-set-mc-without-dropout", lambda: layers.set_mc(_NoDropout()), ValueError,
         ["_NoDropout", "no dropout layer"]),
    Case("layers-replace-dropout-without-dropout", lambda: layers.replace_dropout(
        _NoDropout(), lambda d: d), ValueError, ["_NoDropout", "flax.nnx.Dropout"]),
    Case("layers-concrete-wrapper-without-kernel", lambda: layers.ConcreteDropoutWrapper(
        layers.Identity(), weight_regularizer=1e-6, dropout_regularizer=1e-5), TypeError,
         ["`layer`", "kernel", "Identity"]),
    Case("layers-concrete-wrapper-negative-regularizer", lambda: layers.ConcreteDropoutWrapper(
        nnx.Linear(3, 2, rngs=nnx.Rngs(0)), weight_regularizer=-1.0, dropout_regularizer=1e-5),
         ValueError, ["`weight_regularizer`", ">= 0"]),
    Case("mc-num-samples-float", lambda: mc_sample(_identity, K, X, 2.5), ValueError,
         ["`num_samples`", "positive integer", "2.5"]),
    Case("mc-num-samples-zero", lambda: mc_sample(_identity, K, X, 0), ValueError,
         ["`num_samples`", "positive integer"]),
    Case("mc-chunk-size-float", lambda: mc_sample(_identity, K, X, 4, chunk_size=1.5), ValueError,
         ["`chunk_size`", "positive integer or none"]),
    Case("mc-key-not-a-key", lambda: mc_sample(_identity, 0, X, 4), TypeError,
         ["`key`", "prng key"]),
    Case("mc-running-means-not-increasing",
         lambda: mc_running_means(_identity, K, X, (10, 5)), ValueError,
         ["num_samples", "strictly increasing", "(10, 5)"]),
    Case("mc-running-means-empty", lambda: mc_running_means(_identity, K, X, ()), ValueError,
         ["num_samples", "at least one"]),
    Case("mc-running-means-zero", lambda: mc_running_means(_identity, K, X, (0, 5)), ValueError,
         ["num_samples"]),
    Case("mc-mesh-and-devices", lambda: mc_sample(_identity, K, X, 4, devices=jax.devices(),
                                                  mesh=_MESH), ValueError, ["`devices`", "`mesh`"]),
    Case("mc-sample-axis-not-in-mesh",
         lambda: mc_sample(_identity, K, X, 4, mesh=_MESH, sample_axis="batch"), ValueError,
         ["`sample_axis`", "('samples',)", "'batch'"]),
    Case("mc-sample-axis-without-mesh", lambda: mc_sample(_identity, K, X, 4, sample_axis="s"),
         ValueError, ["`sample_axis`", "`mesh`"]),
    Case("mc-mesh-not-a-mesh", lambda: mc_sample(_identity, K, X, 4, mesh=jax.devices()),
         TypeError, ["`mesh`", "jax.sharding.mesh", "list"]),
    Case("mc-model-instead-of-forward", lambda: mc_sample(_NoDropout(), K, X, 4), TypeError,
         ["`forward`", "module_forward"]),
    Case("mc-model-without-dropout", lambda: module_forward(_NoDropout()), ValueError,
         ["_NoDropout", "no dropout layer that samples", "require_stochastic"]),
    Case("mc-model-with-rate-zero-dropout-only", lambda: module_forward(nnx.Sequential(
        nnx.Linear(3, 2, rngs=nnx.Rngs(0)), nnx.Dropout(0.0))), ValueError,
         ["no dropout layer that samples", "rate 0.0"]),
    Case("predict-model-left-in-mc-mode", lambda: dropjax.train.predict_probabilities(
        _mc_mode_model(), X), ValueError, ["predict_probabilities", "would sample", "set_mc"]),
]

CASES += [
    Case("ops-expected-drop-fraction-block-too-large",
         lambda: dropjax.dropblock_expected_drop_fraction(0.1, 4, 4, 5), ValueError,
         ["`block_size`", "[1, 4]"]),
    Case("schedules-decay-steps-zero", lambda: dropjax.linear_decay_schedule(0.5, 0.1, 0),
         ValueError, ["`decay_steps`", "positive"]),
    Case("schedules-off-fraction-above-one", lambda: dropjax.curriculum_schedule(
        0.5, 10, off_fraction=1.5), ValueError, ["`off_fraction`", "[0, 1]"]),
    Case("schedules-rate-negative", lambda: dropjax.constant_schedule(-0.5), ValueError,
         ["`rate`", "[0, 1]"]),
]
