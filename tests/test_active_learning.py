"""Acquisition functions against direct computations, and the active-learning study."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dropjax import acquisition
from dropjax.penalties import l2_decay
from experiments import main
from experiments.active_learning import config as config_lib
from experiments.active_learning import study as active_learning


def _samples(seed=0, s=30, n=40, c=5):
  logits = np.random.default_rng(seed).normal(size=(s, n, c)) * 2
  return np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)


def test_scores_match_numpy():
  p = _samples()
  mean = p.mean(0)
  entropy = -(mean * np.log(mean)).sum(-1)
  expected_entropy = -(p * np.log(p)).sum(-1).mean(0)
  votes = np.stack([np.bincount(row, minlength=5) for row in p.argmax(-1).T])
  key = jax.random.key(0)
  np.testing.assert_allclose(acquisition.max_entropy(key, p), entropy, rtol=1e-5)
  np.testing.assert_allclose(acquisition.bald(key, p), entropy - expected_entropy, atol=1e-5)
  np.testing.assert_allclose(acquisition.variation_ratios(key, p), 1 - votes.max(1) / 30,
                             rtol=1e-6)
  np.testing.assert_allclose(acquisition.mean_std(key, p), p.std(0).mean(-1), rtol=1e-4)


def test_epistemic_scores_vanish_when_samples_agree_and_entropy_does_not():
  agreeing = np.broadcast_to(_samples(1, s=1), (30, 40, 5))
  key = jax.random.key(0)
  for name in ("bald", "variation_ratios", "mean_std"):
    # float32 cancellation in H[mean] - mean H leaves ~1e-6.
    np.testing.assert_allclose(acquisition.acquisition_score(name)(key, agreeing), 0, atol=1e-5)
  assert np.all(acquisition.max_entropy(key, agreeing) > 0)
  disagreeing = _samples(2)
  assert np.all(acquisition.bald(key, disagreeing) > 1e-3)


def test_random_scores_are_uniform_and_keyed():
  p = np.zeros((2, 20_000, 3))
  a = acquisition.random_scores(jax.random.key(0), p)
  b = acquisition.random_scores(jax.random.key(1), p)
  assert a.shape == (20_000,) and not np.array_equal(a, b)
  # Mean of U(0, 1): 0.5 with standard error sqrt(1/12 / n); 5 s.e.
  assert abs(float(a.mean()) - 0.5) < 5 * np.sqrt(1 / 12 / 20_000)


def test_select_top_skips_unavailable_and_breaks_ties_by_index():
  scores = jnp.array([0.3, 0.9, 0.3, 0.3, 0.1])
  available = jnp.array([True, False, True, True, True])
  np.testing.assert_array_equal(acquisition.select_top(scores, available, 3), [0, 2, 3])


def test_unknown_function_is_named(tmp_path):
  with pytest.raises(ValueError, match="acquisition function must be one of"):
    acquisition.acquisition_score("entropy")
  config = config_lib.get_config("quick")
  config.acquisition_functions = ("bald", "margin")
  with pytest.raises(ValueError, match="'margin' is not one of"):
    main.run_study(config, str(tmp_path))


def test_eval_batch_must_divide_the_test_set(tmp_path):
  config = config_lib.get_config("quick")
  config.eval_batch_size = 30  # the quick test set has 100 images
  with pytest.raises(ValueError, match=r"eval_batch_size ?= ?30 must divide .*100"):
    main.run_study(config, str(tmp_path))
  assert not (tmp_path / "config.json").exists()  # a corrected config can start there


def test_balanced_initial_labels():
  labels = np.repeat(np.arange(10), 50)
  chosen = active_learning.balanced_initial_labels(jax.random.key(0), labels, 2)
  np.testing.assert_array_equal(np.bincount(labels[chosen]), np.full(10, 2))
  again = active_learning.balanced_initial_labels(jax.random.key(0), labels, 2)
  np.testing.assert_array_equal(chosen, again)


def test_labels_to_reach():
  errors = np.array([0.5, 0.2, 0.09, 0.12, 0.04])
  counts = np.array([20, 30, 40, 50, 60])
  assert active_learning.labels_to_reach(errors, counts, 0.10) == 40
  assert active_learning.labels_to_reach(errors, counts, 0.01) is None


class _Interrupted(Exception):
  pass


@pytest.mark.slow
def test_quick_study_resumes_exactly_and_runs_do_not_interact(tmp_path, monkeypatch):
  config = config_lib.get_config("quick")
  whole = main.run_study(config, str(tmp_path / "whole"))
  assert whole["labels"] == [20, 30, 40]
  for row in whole["labelled"]:  # no example is acquired twice
    assert len(set(row)) == len(row) == 40
  runs = list(config.acquisition_functions)
  # Round 0 trains on the same labels with the same keys in every run.
  first = np.asarray(whole["curves"][runs[0]]["mean"])[0]
  assert all(whole["curves"][r]["mean"][0] == first for r in runs)
  # The labels each function acquired, per class, and the protocol table.
  for name in runs:
    counts = whole["labels_per_class"][name]
    assert sum(counts) == whole["labels"][-1] and min(counts) >= config.initial_per_class
  text = (tmp_path / "whole" / "results.md").read_text()
  assert "| setting | ours | reference | source |" in text
  assert "Labelled images per class" in text and "Dropout_Segnet_Q10_N1000.py L237" in text

  real_save = active_learning.save_checkpoint
  calls = []

  def save_then_stop(*args, **kwargs):
    real_save(*args, **kwargs)
    calls.append(1)
    if len(calls) == 1:
      raise _Interrupted

  monkeypatch.setattr(active_learning, "save_checkpoint", save_then_stop)
  with pytest.raises(_Interrupted):
    main.run_study(config, str(tmp_path / "resumed"))
  resumed = main.run_study(config, str(tmp_path / "resumed"))
  assert resumed["labelled"] == whole["labelled"]
  assert resumed["curves"] == whole["curves"]

  # A run's labels and errors do not depend on which other runs share the program.
  monkeypatch.setattr(active_learning, "save_checkpoint", real_save)
  alone = config_lib.get_config("quick")
  alone.acquisition_functions = ("random",)
  single = main.run_study(alone, str(tmp_path / "alone"))
  assert single["labelled"][0] == whole["labelled"][runs.index("random")]
  np.testing.assert_allclose(single["curves"]["random"]["mean"],
                             whole["curves"]["random"]["mean"], atol=1e-6)


@pytest.mark.parametrize("shape", [(4, 4, 1, 32), (4, 4, 32, 32), (3872, 128), (128, 10)])
def test_keras_glorot_uniform_has_keras_0_3_fans(shape):
  # Keras 0.3: fan_in = every axis but the last (HWI for a kernel), fan_out = the last.
  fan_in, fan_out = int(np.prod(shape[:-1])), shape[-1]
  limit = np.sqrt(6.0 / (fan_in + fan_out))
  w = np.asarray(active_learning.keras_glorot_uniform(jax.random.key(0), shape), np.float64)
  assert w.shape == shape and np.abs(w).max() <= limit
  # U(-a, a): variance a^2 / 3; the sample variance's s.e. is a^2 sqrt(4/45 / n).
  assert abs(w.var() - limit**2 / 3) < 5 * limit**2 * np.sqrt(4 / 45 / w.size)
  assert abs(w.mean()) < 5 * limit / np.sqrt(3 * w.size)


def test_config_fields_reach_the_model_and_the_penalty():
  config = config_lib.get_config("quick")
  config.init, config.kernel_size = "keras_glorot_uniform", 3
  data = active_learning.load_pool_and_test(config)
  model = active_learning.Programs(config, *data).make(nnx.Rngs(params=0, dropout=0))
  assert model.conv1.kernel.shape[:2] == (3, 3)
  limit = np.sqrt(6.0 / (9 + 32))
  assert np.abs(np.asarray(model.conv1.kernel[...])).max() <= limit
  assert np.abs(np.asarray(model.conv1.kernel[...])).max() > 0.9 * limit
  # The penalty's gradient covers exactly the kernels named in config.weight_decay_layers:
  # 2 c w there, 0 on every other parameter (biases of those layers included).
  params = nnx.state(model, nnx.Param)
  zeros = jax.tree.map(jnp.zeros_like, params)
  for layers in [(), ("dense1",), ("dense1", "dense2"), ("conv1", "dense2")]:
    tx = l2_decay(0.5, mask=active_learning.decayed_kernels(layers))
    updates, _ = tx.update(zeros, tx.init(params), params)
    for path, update in jax.tree_util.tree_flatten_with_path(updates)[0]:
      layer, leaf = path[0].key, path[1].key
      expected = (np.asarray(getattr(model, layer).kernel[...]) if leaf == "kernel"
                  and layer in layers else 0.0)
      np.testing.assert_array_equal(update, np.broadcast_to(expected, update.shape))


def test_seed_statistics_pair_every_function_with_random():
  config = config_lib.get_config("quick")
  config.acquisition_functions, config.num_seeds = ("bald", "random"), 3
  runs = [(name, seed) for name in config.acquisition_functions for seed in range(3)]
  # (rounds + 1, runs): bald's seeds, then random's.
  errors = np.array([[0.5, 0.6, 0.7, 0.5, 0.5, 0.5],
                     [0.1, 0.2, 0.3, 0.4, 0.4, 0.6]])
  history = {"labels": [20, 30], "test_error": errors.tolist()}
  results = active_learning.summarise(config, runs, history)
  bald, random = results["rows"]
  assert bald["final_error"] == pytest.approx(0.2)
  assert bald["final_error_se"] == pytest.approx(0.1 / np.sqrt(3))
  assert bald["mean_error"] == pytest.approx(np.mean([0.3, 0.4, 0.5]))
  # Paired by seed: bald - random = (-0.3, -0.2, -0.3) at the end.
  d = np.array([-0.3, -0.2, -0.3])
  assert bald["d_final_error"] == pytest.approx(d.mean())
  assert bald["d_final_error_se"] == pytest.approx(d.std(ddof=1) / np.sqrt(3))
  assert bald["d_final_error_decided"]
  assert "d_final_error" not in random and random["final_error"] == pytest.approx(1.4 / 3)
  results.update(seconds=1.0)
  config.test_size = 0
  text = active_learning.report(config, results, num_test=450)
  assert "| bald | 40.00 ± 5.77 | -8.33 ± 3.33* | 20.00 ± 5.77 | -26.67 ± 3.33* |" in text
  # The protocol names the test set actually used (config.test_size = 0: all of it).
  assert "| test set | all 450 test images, weight scaling |" in text
  # One seed has no spread: no statistics, no table.
  config.num_seeds, runs = 1, [("bald", 0), ("random", 0)]
  one = active_learning.summarise(config, runs, {"labels": [20, 30],
                                                 "test_error": errors[:, [0, 3]].tolist()})
  assert "final_error_se" not in one["rows"][0]
  assert "mean over rounds" not in active_learning.report(config, one | {"seconds": 1.0}, 450)
