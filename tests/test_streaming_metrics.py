"""Streaming metrics equal the whole-batch functions on the concatenated data."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from dropjax import metrics, streaming
from dropjax.streaming import ClassificationStats, ConfidenceSample, ScoreSample

N = 1000


def predictions(seed=0, n=N, c=5):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(n, c)) * rng.uniform(0.5, 4)
  probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  return probs.astype(np.float32), rng.integers(0, c, n)


def detection(seed=0, n=N):
  rng = np.random.default_rng(seed)
  positives = rng.integers(0, 2, n).astype(bool)
  return np.round(rng.normal(size=n) + positives, 1).astype(np.float32), positives  # ties


# Batch boundaries: one batch, a single example first, equal batches, uneven random cuts.
SPLITS = {
    "whole": [],
    "one-then-rest": [1],
    "equal-8": list(range(125, N, 125)),
    "random": sorted(np.random.default_rng(1).choice(np.arange(1, N), 9, replace=False)),
}


def batches(split, *arrays):
  return zip(*(np.split(a, split) for a in arrays), strict=True)


def batch_classification(probs, labels, num_bins=15):
  return {
      "accuracy": metrics.accuracy(probs, labels),
      "nll": metrics.negative_log_likelihood(probs, labels),
      "brier": metrics.brier_score(probs, labels),
      "ece": metrics.expected_calibration_error(probs, labels, num_bins),
      "mce": metrics.maximum_calibration_error(probs, labels, num_bins),
  }


def assert_close_to_batch(streamed, batch):
  assert streamed.keys() == batch.keys()
  # Accuracy is the same integer count over n in both, but jnp.mean divides by the constant
  # n as XLA does, multiplying by 1/n: it can be 1 ulp from the correctly rounded quotient.
  np.testing.assert_array_max_ulp(streamed["accuracy"], batch["accuracy"], maxulp=1)
  # The rest are float32 sums added in another order: a few ulp of the sum (ECE/MCE gaps
  # are differences of bin means, hence the absolute tolerance).
  for key in ("nll", "brier"):
    np.testing.assert_allclose(streamed[key], batch[key], rtol=2e-6)
  for key in ("ece", "mce"):
    np.testing.assert_allclose(streamed[key], batch[key], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
@pytest.mark.parametrize("num_bins", [1, 15])
def test_classification_stats_equal_the_batch_metrics(split, num_bins):
  probs, labels = predictions(0)
  state = ClassificationStats.empty(num_bins)
  for p, y in batches(split, probs, labels):
    state = ClassificationStats.update(state, p, y)
  assert int(state.count) == N
  assert int(state.correct) == np.sum(probs.argmax(1) == labels)
  # Bin counts are integers: bitwise those of the reliability diagram.
  if num_bins == 15:
    np.testing.assert_array_equal(state.bin_count,
                                  metrics.reliability_diagram_data(probs, labels)["count"])
  assert_close_to_batch(ClassificationStats.compute(state),
                        batch_classification(probs, labels, num_bins))


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_equal_mass_calibration_is_bitwise_the_batch_value(split):
  probs, labels = predictions(1)
  state = ConfidenceSample.empty()
  for p, y in batches(split, probs, labels):
    state = state.update(p, y)
  out = state.compute(10)
  np.testing.assert_array_equal(
      out["ece"], metrics.expected_calibration_error(probs, labels, 10, equal_mass=True))
  np.testing.assert_array_equal(
      out["mce"], metrics.maximum_calibration_error(probs, labels, 10, equal_mass=True))


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_detection_metrics_are_bitwise_the_batch_values(split):
  scores, positives = detection(2)
  state = ScoreSample.empty()
  for s, p in batches(split, scores, positives):
    state = state.update(scores=s, positives=p)
  out = state.compute()
  np.testing.assert_array_equal(out["auroc"], metrics.auroc(scores=scores, positives=positives))
  np.testing.assert_array_equal(out["average_precision"],
                                metrics.average_precision(scores=scores, positives=positives))
  np.testing.assert_array_equal(out["fpr_at_tpr"],
                                metrics.fpr_at_tpr(scores=scores, positives=positives))


def _shard_states(make, update, arrays, shards):
  states = []
  for chunk in zip(*(np.array_split(a, shards) for a in arrays), strict=True):
    states.append(update(make(), *chunk))
  return states


def test_merged_shards_equal_one_pass():
  probs, labels = predictions(3)
  single = ClassificationStats.empty().update(probs, labels)
  states = _shard_states(ClassificationStats.empty, ClassificationStats.update,
                         (probs, labels), 4)
  # Any merge tree gives the same counts; sums agree to rounding.
  left = functools.reduce(ClassificationStats.merge, states)
  tree = ClassificationStats.merge(states[0].merge(states[1]), states[2].merge(states[3]))
  for merged in (left, tree):
    for field in ("count", "correct", "bin_count", "bin_correct"):
      np.testing.assert_array_equal(getattr(merged, field), getattr(single, field))
    assert_close_to_batch(merged.compute(), batch_classification(probs, labels))
  # The sample states concatenate: merged in shard order they are the one-pass state.
  samples = _shard_states(ConfidenceSample.empty, ConfidenceSample.update, (probs, labels), 4)
  merged = functools.reduce(ConfidenceSample.merge, samples)
  one_pass = ConfidenceSample.empty().update(probs, labels)
  jax.tree.map(np.testing.assert_array_equal, merged, one_pass)
  scores, positives = detection(3)
  parts = [ScoreSample.empty().update(scores=s, positives=p)
           for s, p in zip(np.array_split(scores, 3), np.array_split(positives, 3), strict=True)]
  np.testing.assert_array_equal(functools.reduce(ScoreSample.merge, parts).compute()["auroc"],
                                metrics.auroc(scores=scores, positives=positives))


def test_merge_refuses_other_states():
  with pytest.raises(TypeError, match="ClassificationStats"):
    ClassificationStats.empty().merge(ConfidenceSample.empty())


def test_jitted_update_and_merge_equal_eager():
  probs, labels = predictions(4)
  update, merge = jax.jit(ClassificationStats.update), jax.jit(ClassificationStats.merge)
  eager = jitted = ClassificationStats.empty()
  for p, y in batches(SPLITS["equal-8"], probs, labels):
    eager = eager.update(p, y)
    jitted = update(jitted, p, y)  # one trace: every batch has the same shape
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-6), jitted, eager)
  np.testing.assert_array_equal(jitted.count, eager.count)
  both = merge(jitted, eager)
  np.testing.assert_array_equal(both.count, 2 * N)
  assert_close_to_batch(jax.jit(ClassificationStats.compute)(both),
                        batch_classification(probs, labels))
  samples = jax.jit(ConfidenceSample.update)(ConfidenceSample.empty(), probs, labels)
  np.testing.assert_array_equal(
      samples.compute()["ece"],
      metrics.expected_calibration_error(probs, labels, equal_mass=True))


def test_vmapped_shards_summed_equal_one_pass():
  probs, labels = predictions(5)
  shard = lambda p, y: ClassificationStats.empty().update(p, y)
  stacked = jax.vmap(shard)(probs.reshape(8, -1, 5), labels.reshape(8, -1))
  assert stacked.count.shape == (8,)
  # Every field is a sum, so summing over the shard axis is merging the shards.
  merged = jax.tree.map(lambda x: x.sum(0), stacked)
  assert_close_to_batch(merged.compute(), batch_classification(probs, labels))


def test_psum_over_a_device_axis_merges_the_shards():
  devices = jax.devices()
  mesh = Mesh(np.asarray(devices), ("batch",))
  probs, labels = predictions(6, n=len(devices) * 100)

  def per_device(p, y):
    stats = ClassificationStats.empty().update(p, y)
    return jax.tree.map(lambda x: jax.lax.psum(x, "batch"), stats)

  stats = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P("batch"), P("batch")),
                                out_specs=P()))(probs, labels)
  assert int(stats.count) == probs.shape[0]
  assert_close_to_batch(stats.compute(), batch_classification(probs, labels))


CLASSES = {
    "accuracy": (streaming.Accuracy, lambda p, y: metrics.accuracy(p, y)),
    "nll": (streaming.NegativeLogLikelihood, metrics.negative_log_likelihood),
    "brier": (streaming.BrierScore, metrics.brier_score),
    "ece": (functools.partial(streaming.ExpectedCalibrationError, 10),
            functools.partial(metrics.expected_calibration_error, num_bins=10)),
    "mce": (functools.partial(streaming.MaximumCalibrationError, 10),
            functools.partial(metrics.maximum_calibration_error, num_bins=10)),
    "ece-equal-mass": (
        functools.partial(streaming.ExpectedCalibrationError, 10, equal_mass=True),
        functools.partial(metrics.expected_calibration_error, num_bins=10, equal_mass=True)),
    "mce-equal-mass": (
        functools.partial(streaming.MaximumCalibrationError, 10, equal_mass=True),
        functools.partial(metrics.maximum_calibration_error, num_bins=10, equal_mass=True)),
}


@pytest.mark.parametrize("name", CLASSES)
def test_metric_classes_equal_the_batch_functions_and_reset(name):
  make, batch_fn = CLASSES[name]
  probs, labels = predictions(7)
  metric = make()
  for p, y in batches(SPLITS["random"], probs, labels):
    metric.update(probs=p, labels=y, loss=1.0)  # extra keywords ignored, as in flax
  if name.endswith("equal-mass"):  # the same values through the same code: bitwise
    check = np.testing.assert_array_equal
  elif name == "accuracy":  # see assert_close_to_batch
    check = functools.partial(np.testing.assert_array_max_ulp, maxulp=1)
  else:
    check = functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6)
  check(metric.compute(), batch_fn(probs, labels))
  metric.reset()
  metric.update(probs=probs[:10], labels=labels[:10])
  check(metric.compute(), batch_fn(probs[:10], labels[:10]))


def test_auroc_class_and_multimetric():
  scores, positives = detection(8)
  metric = streaming.AUROC()
  for s, p in batches(SPLITS["one-then-rest"], scores, positives):
    metric.update(scores=s, positives=p)
  np.testing.assert_array_equal(metric.compute(),
                                metrics.auroc(scores=scores, positives=positives))
  probs, labels = predictions(8)
  multi = nnx.MultiMetric(all=streaming.ClassificationMetrics(15),
                          accuracy=streaming.Accuracy())
  for p, y in batches(SPLITS["equal-8"], probs, labels):
    multi.update(probs=p, labels=y)
  out = multi.compute()
  assert_close_to_batch(out["all"], batch_classification(probs, labels))
  np.testing.assert_array_max_ulp(out["accuracy"], metrics.accuracy(probs, labels), maxulp=1)


def test_nnx_jitted_class_update_equals_eager():
  probs, labels = predictions(9)
  eager, jitted = streaming.ClassificationMetrics(), streaming.ClassificationMetrics()
  step = nnx.jit(lambda m, p, y: m.update(probs=p, labels=y))
  for p, y in batches(SPLITS["equal-8"], probs, labels):
    eager.update(probs=p, labels=y)
    step(jitted, jnp.asarray(p), jnp.asarray(y))
  for key, value in jitted.compute().items():
    np.testing.assert_allclose(value, eager.compute()[key], rtol=1e-6, err_msg=key)


def test_traced_values_pass_unchecked_but_shapes_are_checked():
  probs, labels = predictions(10, n=8)
  bad = labels.copy()
  bad[0] = -1  # concrete: refused; traced: cannot be seen, must not break the trace
  with pytest.raises(ValueError, match="labels"):
    ClassificationStats.empty().update(probs, bad)
  jax.jit(ClassificationStats.update)(ClassificationStats.empty(), probs, bad)
  with pytest.raises(ValueError, match=r"\(8,\)"):
    jax.jit(ClassificationStats.update)(ClassificationStats.empty(), probs, labels[:, None])
  # A batch with one class is fine for the detection stream; the whole stream is not.
  state = ScoreSample.empty().update(scores=np.ones(3), positives=np.ones(3, bool))
  with pytest.raises(ValueError, match="both"):
    state.compute()
