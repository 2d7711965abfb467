"""Max-norm, rate schedules in the training loop, and the regularisers study."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dropjax import schedules
from dropjax.data import load_digits
from dropjax.models import MLP, ConvNet
from dropjax.train import fit_classifier, largest_unit_norm, max_norm_projection, rate_variables
from experiments import main
from experiments.regularizers import config as config_lib
from experiments.regularizers import study as regularizers

DATA = load_digits()
FIT = dict(key=jax.random.key(1), epochs=2, batch_size=64, learning_rate=1e-2)


def _mlp(input_rate, hidden_rate):
  return MLP(64, [32, 32], 10, input_rate=input_rate, hidden_rate=hidden_rate,
             rngs=nnx.Rngs(params=0, dropout=1))


def _kernels(model):
  return [p[...] for path, p in nnx.iter_graph(model)
          if isinstance(p, nnx.Param) and path[-1] == "kernel"]


def test_max_norm_bounds_every_units_incoming_weights():
  conv = ConvNet(1, 10, spatial_size=8, channels=(4, 4), dense_features=8,
                 rngs=nnx.Rngs(params=0, dropout=1))
  before = _kernels(conv)
  max_norm_projection(conv, 0.3)
  for old, new in zip(before, _kernels(conv), strict=True):
    axes = tuple(range(old.ndim - 1))
    old_norms = np.sqrt((np.asarray(old) ** 2).sum(axes))
    new_norms = np.sqrt((np.asarray(new) ** 2).sum(axes))
    np.testing.assert_allclose(new_norms, np.minimum(old_norms, 0.3), rtol=1e-5)
    # Directions are kept: each unit's weights are only rescaled.
    np.testing.assert_allclose(np.asarray(new), np.asarray(old) * (new_norms / old_norms),
                               rtol=1e-5, atol=1e-7)


def test_training_with_max_norm_ends_within_the_bound():
  model = _mlp(0.2, 0.5)
  fit_classifier(model, DATA.train, max_norm=0.5, **FIT)
  for kernel in _kernels(model):
    assert np.sqrt((np.asarray(kernel) ** 2).sum(0)).max() <= 0.5 * (1 + 1e-5)


def test_largest_unit_norm_is_what_max_norm_bounds():
  model = _mlp(0.0, 0.0)
  manual = max(np.sqrt((np.asarray(k) ** 2).sum(0)).max() for k in _kernels(model))
  assert largest_unit_norm(model) == pytest.approx(manual, rel=1e-6)
  # A bound below every unit's norm leaves all of them at exactly the bound.
  smallest = min(np.sqrt((np.asarray(k) ** 2).sum(0)).min() for k in _kernels(model))
  max_norm_projection(model, 0.5 * smallest)
  assert largest_unit_norm(model) == pytest.approx(0.5 * smallest, rel=1e-5)


def _row(method, error, norm):
  return {"model": "mlp", "method": method, "error": error, "largest_unit_norm": norm}


def test_claims_say_whether_max_norm_could_bind():
  config = config_lib.get_config()
  config.models = ("mlp",)
  rows = [_row("none", 0.02, 2.5), _row("dropout", 0.03, 2.9), _row("max_norm", 0.02, 2.5)]
  (line,) = [c for c in regularizers._claims(config, rows) if "unit norm" in c]
  assert "ends at 2.90" in line and "c = 3 never binds" in line
  rows.append(_row("none", 0.02, 3.4))
  (line,) = [c for c in regularizers._claims(config, rows) if "unit norm" in c]
  assert "ends at 3.40" in line and "c = 3 binds" in line


def test_mnist_cpu_config_only_shrinks_the_cnn():
  full, cpu = config_lib.get_config("mnist"), config_lib.get_config("mnist_cpu")
  differing = sorted(k for k in full if full[k] != cpu[k])
  assert differing == ["cnn_channels", "cnn_dense_features", "epochs"]
  assert full.epochs.mlp == cpu.epochs.mlp and cpu.epochs.cnn < full.epochs.cnn


def test_rate_scale_of_one_is_the_fixed_rate_and_zero_is_no_dropout():
  # 0.1 and 0.3 draw 16-bit lanes whether concrete or traced, so the masks agree.
  fixed = _mlp(0.1, 0.3)
  fit_classifier(fixed, DATA.train, **FIT)
  scaled = _mlp(jnp.asarray(0.1), jnp.asarray(0.3))
  fit_classifier(scaled, DATA.train, rate_scale=schedules.constant_schedule(1.0), **FIT)
  for a, b in zip(_kernels(fixed), _kernels(scaled), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

  off = _mlp(jnp.asarray(0.2), jnp.asarray(0.5))
  history = fit_classifier(off, DATA.train, rate_scale=schedules.constant_schedule(0.0), **FIT)
  plain = _mlp(0.0, 0.0)
  plain_history = fit_classifier(plain, DATA.train, **FIT)
  np.testing.assert_allclose(history["loss"], plain_history["loss"], rtol=1e-5)
  # The starting rates are restored for inference and MC sampling.
  np.testing.assert_allclose([v[...] for v in rate_variables(off)], [0.2, 0.5, 0.5])


def test_rate_scale_needs_array_rates():
  with pytest.raises(ValueError, match="`rate_scale` needs a model built with array rates"):
    fit_classifier(_mlp(0.2, 0.5), DATA.train, rate_scale=schedules.constant_schedule(1.0), **FIT)


def test_per_depth_rates_reach_the_mlp():
  config = config_lib.get_config("quick")
  model = regularizers.build_model(config, "mlp", "dropout_per_depth", 0.5, (8, 8, 1),
                                   jax.random.key(0))
  assert [d.rate for d in model.drops] == [0.1, 0.3, 0.5]
  uniform = regularizers.build_model(config, "mlp", "dropout_uniform", 0.5, (8, 8, 1),
                                     jax.random.key(0))
  assert [d.rate for d in uniform.drops] == [0.3, 0.3, 0.3]


def test_unknown_method_is_named(tmp_path):
  config = config_lib.get_config("quick")
  config.methods = ("dropout", "mixup")
  with pytest.raises(ValueError, match="'mixup' is not one of"):
    main.run_study(config, str(tmp_path))


@pytest.mark.slow
def test_quick_study_tunes_runs_and_resumes(tmp_path):
  config = config_lib.get_config("quick")
  config.models = ("mlp",)
  config.methods = ("none", "dropout", "dropout_curriculum", "early_stopping")
  out = main.run_study(config, str(tmp_path))
  assert out["tuned_dense_rate"]["mlp"] in config.tuning_rates
  assert len(out["rows"]) == 4 * config.num_seeds
  assert all(0 <= r["error"] <= 1 and np.isfinite(r["nll"]) for r in out["rows"])
  assert any("Tuned fixed rate vs schedule" in c for c in out["claims"])
  assert (tmp_path / "regularizers.png").exists()
  again = main.run_study(config, str(tmp_path))
  assert again["rows"] == out["rows"]
