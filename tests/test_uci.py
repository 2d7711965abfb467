"""The UCI protocol: formulas, grid selection, vmapped == separate, resume, end to end."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import norm

from dropjax.data import uci, uci_sha256
from experiments import main
from experiments.uci import config as uci_config
from experiments.uci import model as regression
from experiments.uci import reference as uci_reference
from experiments.uci import study as uci_experiment
from experiments.uci_concrete import config as uci_concrete_config

TX = regression.make_optimizer(1e-3)


def _toy(n=150, d=4, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d)).astype(np.float32)
  y = (x @ rng.normal(size=d) + 0.1 * rng.normal(size=n)).astype(np.float32)
  return jnp.asarray(x), jnp.asarray(y)


def test_mc_statistics_match_a_direct_numpy_computation():
  x, y = _toy()
  params = regression.init_regressor(jax.random.key(0), 4, 16)
  key, rate, tau, y_mean, y_std = jax.random.key(1), 0.1, 2.0, 3.0, 1.5
  stats = regression.mc_regression_stats(params, key, x, y * y_std + y_mean, rate, tau, y_mean,
                                         y_std, num_samples=60, chunk_size=20)
  samples = np.stack([np.asarray(regression.regressor_forward(
      params, jax.random.fold_in(key, i), x, rate)) * y_std + y_mean for i in range(60)])
  target = np.asarray(y) * y_std + y_mean
  ll = np.mean(logsumexp(-0.5 * tau * (target - samples) ** 2, axis=0) - np.log(60)
               - 0.5 * np.log(2 * np.pi) + 0.5 * np.log(tau))
  np.testing.assert_allclose(stats.log_likelihood, ll, rtol=1e-5)
  np.testing.assert_allclose(stats.mc_rmse, np.sqrt(np.mean((samples.mean(0) - target) ** 2)),
                             rtol=1e-5)
  ws = np.asarray(regression.regressor_forward(params, None, x, rate, deterministic=True))
  np.testing.assert_allclose(stats.weight_scaling_rmse,
                             np.sqrt(np.mean((ws * y_std + y_mean - target) ** 2)), rtol=1e-5)
  std = np.sqrt(samples.var(0) + 1 / tau)
  for level, coverage in zip(regression.COVERAGE_LEVELS, stats.coverage, strict=True):
    z = norm.ppf(0.5 + level / 2)
    np.testing.assert_allclose(coverage, np.mean(np.abs(target - samples.mean(0)) <= z * std),
                               atol=1.5 / len(target))  # one boundary point either way
  # The chunking of the samples does not matter.
  other = regression.mc_regression_stats(params, key, x, target, rate, tau, y_mean, y_std,
                                         num_samples=60, chunk_size=60)
  np.testing.assert_allclose(other.log_likelihood, stats.log_likelihood, rtol=1e-6)


@pytest.mark.parametrize("rate", [0.005, 0.1])
def test_samples_one_at_a_time_give_the_vmapped_chunks_statistics_to_rounding(rate):
  """The test pass may map a chunk's samples one at a time (cache-sized) or vmap them (the
  committed UCI tables). Same masks, same per-sample arithmetic: the same numbers up to
  float rounding (XLA computes each sample's last few points, the remainder of its vector
  loop, on another path when the samples are not flattened into one array)."""
  x, y = _toy(n=300, d=6)
  # Nonzero biases, so that no hidden unit's output is exactly 0 for every sample.
  params = jax.tree.map(lambda a: a + 0.03, regression.init_regressor(jax.random.key(2), 6, 50))
  # In the predictions' units, as mc_regression_stats passes it: the deviations are then
  # small and the variance is not a difference of two large sums.
  reference = regression.regressor_forward(params, None, x, rate, deterministic=True) * 1.5 + 3.0

  def stream(rate, vectorize):
    def sample(key):
      preds = regression.regressor_forward(params, key, x, rate) * 1.5 + 3.0
      return preds, -0.5 * 2.0 * (y - preds) ** 2, jnp.zeros_like(preds)
    return regression._stream_samples(sample, jax.random.key(5), reference, 60, 20,
                                      vectorize=vectorize)

  # The rate is traced, as in the study (the grid's models are mapped over).
  mapped = jax.jit(lambda r: stream(r, False))(jnp.float32(rate))
  vmapped = jax.jit(lambda r: stream(r, True))(jnp.float32(rate))
  for a, b in zip(mapped, vmapped, strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def _train(state, keys, x, y, rate, l2, first, epochs):
  return regression.train_epochs(state, keys, x, y, rate, l2, first, num_epochs=epochs,
                                 batch_size=32, tx=TX)


def test_vmapped_grid_training_equals_separate_models():
  x, y = _toy()
  rates = jnp.array([0.005, 0.05, 0.1])
  l2 = regression.l2_coefficient(rates, jnp.array([0.5, 1.0, 2.0]), x.shape[0])
  keys = jax.random.split(jax.random.key(0), 3)
  streams = jax.vmap(lambda k: jax.random.split(k, 3))(keys)
  states = jax.vmap(lambda k: regression.init_state(k, 4, 16, TX))(streams[:, 0])
  batched, _ = jax.jit(jax.vmap(lambda st, a, b, r, c: _train(st, (a, b), x, y, r, c, 0, 5)))(
      states, streams[:, 1], streams[:, 2], rates, l2)
  for m in range(3):
    state = regression.init_state(streams[m, 0], 4, 16, TX)
    alone, _ = jax.jit(lambda st, a, b, r, c: _train(st, (a, b), x, y, r, c, 0, 5))(
        state, streams[m, 1], streams[m, 2], rates[m], l2[m])
    for a, b in zip(jax.tree.leaves(alone.params), jax.tree.leaves(batched.params), strict=True):
      np.testing.assert_allclose(a, b[m], rtol=1e-4, atol=1e-6)


def test_training_in_segments_equals_one_run():
  x, y = _toy()
  keys = tuple(jax.random.split(jax.random.key(3)))
  state = regression.init_state(jax.random.key(4), 4, 16, TX)
  whole, _ = _train(state, keys, x, y, 0.05, 1e-4, 0, 6)
  half, _ = _train(state, keys, x, y, 0.05, 1e-4, 0, 3)
  resumed, _ = _train(half, keys, x, y, 0.05, 1e-4, 3, 3)
  for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(resumed), strict=True):
    np.testing.assert_array_equal(a, b)


def test_test_pass_resumes_between_models_and_ignores_other_models_results(tmp_path):
  models = {"w": jnp.arange(12.0).reshape(6, 2), "key": jax.random.split(jax.random.key(0), 6)}
  fn = lambda m: {"sum": m["w"].sum() + jax.random.uniform(m["key"]), "twice": 2 * m["w"]}
  checkpoint = str(tmp_path / "test")
  whole, _ = uci_experiment.map_models_resumably(fn, models, checkpoint=str(tmp_path / "a"),
                                                 label="whole")
  np.testing.assert_array_equal(whole["twice"], 2 * models["w"])
  # Killed at model 4: a host callback fails there, after models 0-3 were saved.
  calls = []

  def record(w, fail_at=None):
    calls.append(float(w[0]))
    if float(w[0]) == fail_at:
      raise RuntimeError("killed")
    return w

  def observed(callback):
    return lambda m: fn({**m, "w": jax.pure_callback(callback, m["w"], m["w"])})

  with pytest.raises(Exception, match="killed"):
    uci_experiment.map_models_resumably(observed(lambda w: record(w, fail_at=8.0)), models,
                                        checkpoint=checkpoint, label="killed",
                                        min_save_seconds=0.0)
  calls.clear()
  resumed, _ = uci_experiment.map_models_resumably(observed(record), models,
                                                   checkpoint=checkpoint, label="resumed")
  assert calls == [8.0, 10.0]  # models 0-3 were not recomputed
  for name in whole:
    np.testing.assert_array_equal(resumed[name], whole[name])
  # Other models (say, retrained after their checkpoint was deleted): the pass starts over.
  other = {**models, "w": models["w"] + 1}
  calls.clear()
  fresh, _ = uci_experiment.map_models_resumably(observed(record), other, checkpoint=checkpoint,
                                                 label="other")
  assert len(calls) == 6
  np.testing.assert_array_equal(fresh["twice"], 2 * other["w"])


def test_l2_coefficient_is_the_reference_formula():
  np.testing.assert_allclose(regression.l2_coefficient(0.05, 0.5, 400), 1e-4 * 0.95 / 400)


def test_reference_results_are_read(data_dir):
  ref = uci_reference.load_reference_results("yacht", data_dir)
  assert ref.mc_rmse.shape == (20,) and set(ref.rate) <= {0.005, 0.01, 0.05, 0.1}
  assert ref.summary["MC errors"][0] == pytest.approx(0.666275)
  assert ref.summary["lls"] == pytest.approx((-1.250148, 0.015297))


def _uci_table_script():
  import importlib.util

  path = os.path.join(os.path.dirname(__file__), "..", "scripts", "uci_table.py")
  spec = importlib.util.spec_from_file_location("uci_table", path)
  table = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(table)
  return table


def test_quick_run_end_to_end_selects_the_argmax_and_resumes(data_dir, tmp_path, monkeypatch):
  config = uci_config.get_config("quick")
  config.data_dir = data_dir
  config.mc_vectorize = True  # the first published table's layout; the mapped one below
  workdir = str(tmp_path)
  summary = main.run_study(config, workdir)
  assert summary["n_splits"] == 2 and np.isfinite(summary["log_likelihood"][0])
  assert summary["reference_2018"]["mc_rmse"][0] == pytest.approx(0.666275)
  folder = os.path.join(workdir, "yacht")
  validation = json.load(open(os.path.join(folder, "validation.json")))
  ll = np.asarray(validation["log_likelihood"]).reshape(2, 12)
  ds = uci.load_uci("yacht", data_dir)
  grid = [(p, t) for p in ds.dropout_rates for t in ds.tau_values]
  for s, row in enumerate(summary["rows"]):
    best = int(np.flatnonzero(ll[s] == ll[s].max())[0])  # first maximum
    assert (row["rate"], row["tau"]) == grid[best]
    assert {"reference_mc_rmse", "reference_rate"} <= set(row)
  assert os.path.getsize(os.path.join(folder, "results.csv")) > 0
  # The workdir records the data it ran on: the published files' checksums.
  data = json.load(open(os.path.join(folder, "data.json")))
  assert data["files"]["uci/yacht/data/data.txt"] == uci_sha256.recorded("yacht")["data/data.txt"]
  # Killed after the grid search: the final phase reruns from scratch and matches.
  os.remove(os.path.join(folder, "results.json"))
  shutil.rmtree(os.path.join(folder, "checkpoints", "final"))
  again = main.run_study(config, workdir)
  assert again["rows"] == summary["rows"]
  # The table script reads the workdir; its total time is the sum of its rows'.
  out = tmp_path / "table"
  monkeypatch.setattr("sys.argv", ["uci_table.py", "--workdir", workdir, "--data_dir", data_dir,
                                   "--out", str(out)])
  _uci_table_script().main()
  text = (out / "uci-table.md").read_text()
  seconds = sum(again["seconds"][k] for k in again["seconds"] if k != "this_invocation")
  assert "| yacht | 2 |" in text
  assert (f"of 1 datasets within the band on both RMSE and LL. All 1 took "
          f"{seconds / 3600:.1f} hours") in text
  # The test pass's layout is execution only: a resume may change it, and the final test,
  # rerun with the samples mapped one at a time, gives the same numbers to float rounding.
  os.remove(os.path.join(folder, "results.json"))
  shutil.rmtree(os.path.join(folder, "checkpoints", "final_test"))
  config.mc_vectorize = False
  mapped = main.run_study(config, workdir)
  assert json.load(open(os.path.join(folder, "config.json")))["mc_vectorize"] is False
  for row, expected in zip(mapped["rows"], again["rows"], strict=True):
    n_test = len(uci.uci_split(ds, row["split"]).y_test)
    coverage = {k for k in row if k.startswith("coverage_")}
    assert {k: v for k, v in row.items() if k not in coverage} == pytest.approx(
        {k: v for k, v in expected.items() if k not in coverage}, rel=1e-5, abs=1e-6)
    for k in coverage:  # a fraction of test points: one may cross an interval's edge
      assert row[k] == pytest.approx(expected[k], abs=1.5 / n_test)


def test_concrete_stats_match_a_direct_numpy_computation():
  x, y = _toy()
  params = regression.init_concrete_regressor(jax.random.key(0), 4, 16, init_rate=0.2)
  key, y_mean, y_std = jax.random.key(1), 3.0, 1.5
  target = np.asarray(y) * y_std + y_mean
  stats = regression.mc_concrete_stats(params, key, x, jnp.asarray(target), y_mean, y_std,
                                       num_samples=60, chunk_size=20)
  outs = [regression.concrete_regressor_forward(params, jax.random.fold_in(key, i), x)
          for i in range(60)]
  mu = np.stack([np.asarray(m) for m, _ in outs]) * y_std + y_mean
  var = np.exp(np.stack([np.asarray(v) for _, v in outs])) * y_std**2
  log_density = -0.5 * (target - mu) ** 2 / var - 0.5 * np.log(2 * np.pi * var)
  ll = np.mean(logsumexp(log_density, axis=0) - np.log(60))
  np.testing.assert_allclose(stats.log_likelihood, ll, rtol=1e-5)
  np.testing.assert_allclose(stats.mc_rmse, np.sqrt(np.mean((mu.mean(0) - target) ** 2)),
                             rtol=1e-5)
  std = np.sqrt(mu.var(0) + var.mean(0))
  z = norm.ppf(0.975)
  np.testing.assert_allclose(stats.coverage[-1],
                             np.mean(np.abs(target - mu.mean(0)) <= z * std), atol=1.5 / 150)


@pytest.mark.parametrize("separate_heads", [False, True])
def test_concrete_loss_trains_every_rate(separate_heads):
  x, y = _toy()
  params = regression.init_concrete_regressor(jax.random.key(0), 4, 16,
                                              separate_heads=separate_heads)
  loss_fn = regression.concrete_loss(150, 1e-2)
  grads = jax.grad(loss_fn)(params, jax.random.key(1), x, y, jnp.ones(150))
  names = regression.CONCRETE_RATES[separate_heads]
  for name in names:
    assert np.isfinite(grads[f"logit_{name}"]) and grads[f"logit_{name}"] != 0
  rates = regression.concrete_rates(params)
  assert list(rates) == list(names)
  np.testing.assert_allclose(list(rates.values()), [0.1] * len(names), rtol=1e-6)


def test_separate_heads_draw_their_own_masks_and_penalties():
  x, y = _toy()
  shared = regression.init_concrete_regressor(jax.random.key(0), 4, 16)
  separate = regression.init_concrete_regressor(jax.random.key(0), 4, 16, separate_heads=True)
  key = jax.random.key(3)
  # With every rate at 0 the masks keep everything: both layouts give the same outputs.
  zero = -30.0
  out_shared = regression.concrete_regressor_forward(
      {**shared, "logit_input": zero, "logit_hidden": zero}, key, x)
  out_separate = regression.concrete_regressor_forward(
      {**separate, **{f"logit_{n}": zero for n in ("input", "mean_head", "log_var_head")}},
      key, x)
  np.testing.assert_allclose(out_shared, out_separate, rtol=1e-5, atol=1e-6)
  # A rate on the log-variance head alone leaves the mean head deterministic.
  only_log_var = {**separate, "logit_input": zero, "logit_mean_head": zero,
                  "logit_log_var_head": 0.0}
  means = [regression.concrete_regressor_forward(only_log_var, jax.random.key(i), x)
           for i in range(3)]
  np.testing.assert_allclose(means[0][0], means[1][0], rtol=1e-6)
  assert not np.allclose(means[0][1], means[1][1])
  # Separate heads: the loss's penalty is the sum of one penalty per layer.
  loss_fn = regression.concrete_loss(150, 1e-2)
  no_data = jnp.zeros(150)  # weight 0 everywhere: the NLL term is 0 / 0 -> use one point
  weight = no_data.at[0].set(1.0)
  total = loss_fn(separate, key, x, y, weight)
  mean, log_var = regression.concrete_regressor_forward(separate, key, x)
  nll = jnp.exp(-log_var[0]) * (y[0] - mean[0]) ** 2 + log_var[0]
  rates = regression.concrete_rates(separate)
  wr, dr = 1e-4 / 150, 2.0 / 150
  expected = sum(
      regression.concrete_dropout_regularizer(
          kernel, rates[name], input_dim=dim, weight_regularizer=wr, dropout_regularizer=dr)
      for kernel, name, dim in ((separate["w1"], "input", 4), (separate["w_mean"], "mean_head", 16),
                                (separate["w_log_var"], "log_var_head", 16)))
  np.testing.assert_allclose(total, nll + expected, rtol=1e-5)


def test_concrete_quick_run_learns_rates_and_resumes(data_dir, tmp_path):
  config = uci_concrete_config.get_config("quick")
  config.data_dir = data_dir
  summary = main.run_study(config, str(tmp_path))
  assert summary["n_splits"] == 2 and np.isfinite(summary["log_likelihood"][0])
  for row in summary["rows"]:
    assert 0 < row["rate_input"] < 1
    assert 0 < row["rate_mean_head"] < 1 and 0 < row["rate_log_var_head"] < 1
    assert row["rate_input"] != pytest.approx(0.1, abs=1e-6)  # it moved
  # The rates keep the model's order (a vmapped dict would sort them), and each record
  # carries the epoch it was taken at.
  assert summary["rate_names"] == ["input", "mean_head", "log_var_head"]
  assert [h["epoch"] for h in summary["rate_history"]][-1] == summary["epochs"]
  means = [np.mean([row[f"rate_{n}"] for row in summary["rows"]]) for n in summary["rate_names"]]
  np.testing.assert_allclose(summary["rate_history"][-1]["value"], means, rtol=1e-5)
  os.remove(os.path.join(tmp_path, "yacht", "results.json"))  # the finished checkpoint is kept
  again = main.run_study(config, str(tmp_path))
  assert again["rows"] == summary["rows"]
  # The rates recorded per segment are kept in the checkpoint, so a resume keeps them.
  assert len(again["rate_history"]) == 2 and again["rate_history"] == summary["rate_history"]


def test_uci_table_shows_three_significant_digits_of_every_rmse():
  table = _uci_table_script()
  shown = {rmse: f"{rmse:.{table.rmse_decimals(rmse)}f}"
           for rmse in (0.000776, 0.0795, 0.539, 2.88)}
  assert shown == {0.000776: "0.000776", 0.0795: "0.0795", 0.539: "0.539", 2.88: "2.88"}
  assert table.within_band(0.000776, (0.000743, 0.00002), higher_is_better=False)
  assert not table.within_band(0.000800, (0.000743, 0.00002), higher_is_better=False)
  assert table.within_band(-2.79, (-2.81, 0.001), higher_is_better=True)  # better counts
