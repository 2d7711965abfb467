"""The calibration-under-shift study end to end on its quick config, its rotation and its
verdicts."""

import numpy as np
import pytest
from flax import nnx
from scipy import ndimage

from experiments import config_checks, main
from experiments.mc_calibration import config as config_lib
from experiments.mc_calibration import study as mc_calibration


def test_rotation_by_90_degrees_is_exact_and_0_is_the_identity():
  images = np.random.default_rng(0).uniform(size=(3, 8, 8, 1)).astype(np.float32)
  np.testing.assert_array_equal(mc_calibration.rotate(images, 0), images)
  # A quarter turn lands on the pixel grid, where the cubic spline is exact.
  np.testing.assert_allclose(mc_calibration.rotate(images, 90), np.rot90(images, 1, axes=(1, 2)),
                             atol=1e-5)


def test_rotation_is_the_reference_call_then_its_centre_crop():
  images = np.random.default_rng(1).uniform(size=(2, 28, 28, 1)).astype(np.float32)
  grown = ndimage.rotate(images, 30, axes=[-2, -3])  # scipy's defaults: order 3, reshape
  assert grown.shape[1] > 28  # the canvas grew; the crop takes its centre
  top = grown.shape[1] // 2 - 14
  np.testing.assert_array_equal(mc_calibration.rotate(images, 30),
                                grown[:, top:top + 28, top:top + 28])
  # A cubic spline overshoots: the reference does not clip, nor do we.
  assert mc_calibration.rotate(images, 30).max() > 1 or mc_calibration.rotate(images, 30).min() < 0


@pytest.mark.slow
def test_quick_study_reports_every_method_over_seeds(tmp_path):
  config = config_lib.get_config("quick")
  out = main.run_study(config, str(tmp_path))
  summary = out["summary"]
  assert [r["method"] for r in summary["clean"]] == [
      "vanilla", "temperature scaling", "last-layer Laplace", "deep ensemble (2)",
      "dropout net, no MC", "MC dropout (S=1)", "MC dropout (S=4)"]
  # Laplace keeps the vanilla net's mean logits; the probit scales each class by its own
  # factor, which changes an argmax only near a tie.
  by_method = {r["method"]: r for r in summary["clean"]}
  assert abs(by_method["last-layer Laplace"]["accuracy"]
             - by_method["vanilla"]["accuracy"]) <= 0.02
  assert all(run["laplace_prior_precision"] > 0 for run in out["runs"])
  assert len(out["laplace_comparisons"]) == 8
  assert "last-layer Laplace: predictive entropy" in {r["score"] for r in summary["ood"]}
  for row in summary["clean"] + summary["shifted"]:
    assert 0 <= row["ece"] <= 1 and np.isfinite(row["nll"]) and row["nll_se"] >= 0
  runs = out["runs"]
  assert len(runs) == config.num_seeds
  # Seeds differ, and the mean over seeds is the mean of the seeds.
  clean = lambda run, m: next(r for r in run["shift"] if r["angle"] == 0 and r["method"] == m)
  values = [clean(run, "vanilla")["nll"] for run in runs]
  assert values[0] != values[1]
  assert summary["clean"][0]["nll"] == pytest.approx(np.mean(values))
  assert {r["score"] for r in summary["ood"]} >= {"MC dropout: mutual information (BALD)"}
  for finding in out["findings"]:
    assert finding["holds"] + finding["not decided"] + finding["reversed"] == 1
    assert finding["on_mean"] in ("holds", "not decided", "reversed")
  text = (tmp_path / "results.md").read_text()
  assert "| setting | ours | reference | source |" in text
  assert (tmp_path / "seeds" / "seed1.json").stat().st_size > 0
  again = main.run_study(config, str(tmp_path))  # every seed cached
  assert again["summary"] == summary


def _runs(per_seed):
  """Runs holding one angle (90) and the given {method: [nll per seed]}."""
  seeds = len(next(iter(per_seed.values())))
  return [{"shift": [{"angle": 90, "method": m, "nll": v[s]} for m, v in per_seed.items()]}
          for s in range(seeds)]


def test_verdicts_need_every_rival_beaten_by_two_standard_errors():
  shifted = lambda a: a != 0
  runs = _runs({"a": [1.0, 1.1, 0.9, 1.0], "b": [2.0, 2.1, 1.9, 2.05], "c": [1.5, 1.4, 1.6, 1.5]})
  assert mc_calibration.verdict(runs, shifted, "a", ["b", "c"], "nll")[0] == "holds"
  assert mc_calibration.verdict(runs, shifted, "b", ["a"], "nll")[0] == "reversed"
  noisy = _runs({"a": [1.0, 2.0, 0.5, 1.6], "b": [1.5, 1.0, 1.2, 1.3]})
  assert mc_calibration.verdict(noisy, shifted, "a", ["b"], "nll")[0] == "not decided"


def test_models_follow_the_config():
  config = config_lib.get_config("quick")
  rngs = nnx.Rngs(params=0, dropout=1)
  mlp = mc_calibration.build_model(config, 10, (28, 28, 1), 0.25, rngs)
  assert [float(d.rate) for d in mlp.drops] == [0.25, 0.25]  # the input included
  config.input_dropout = False
  mlp = mc_calibration.build_model(config, 10, (28, 28, 1), 0.25, rngs)
  assert [float(getattr(d, "rate", 0.0)) for d in mlp.drops] == [0.0, 0.25]  # Identity
  config.model = "lenet"
  lenet = mc_calibration.build_model(config, 10, (28, 28, 1), 0.3, rngs)
  assert lenet.conv2.kernel.shape == (3, 3, 32, 64) and lenet.dense1.kernel.shape == (9216, 128)
  # Keras's glorot_uniform: U(+-sqrt(6 / (fan_in + fan_out))) with the receptive field.
  limit = np.sqrt(6 / (9 * 32 + 9 * 64))
  kernel = np.asarray(lenet.conv2.kernel[...])
  assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.95 * limit


@pytest.mark.parametrize("field,value,message", [
    ("model", "resnet", "'lenet5'"),
    ("init", "he", "glorot_uniform"),
    ("num_seeds", 1, ">= 2"),
    ("mc_samples", (10, 1), "strictly increasing"),
    ("rotation_order", 7, r"0\.\.5"),
    ("angles", (15, 30), "must hold 0"),
    ("laplace_structure", "diag", "'kron'"),
    ("laplace_hessian", "fisher", "'ef'"),
    ("laplace_link", "bridge", "'probit'"),
])
def test_bad_configs_are_refused(field, value, message):
  config = config_lib.get_config("quick")
  config[field] = value
  with pytest.raises(config_checks.ConfigError, match=message):
    config_checks.check_config(config)


def test_bad_family_settings_are_refused():
  config = config_lib.get_config("quick")
  config.hparams.dropout.dropout_rate = 0.0
  with pytest.raises(config_checks.ConfigError, match=r"hparams\.dropout\.dropout_rate"):
    config_checks.check_config(config)
  assert config_lib.get_config("mnist_lenet").hparams.dropout.dropout_rate == pytest.approx(
      0.3033871646)


def test_lenet5_features_then_head_is_the_model():
  from dropjax.models import LeNet5

  model = LeNet5(10, spatial_size=28, rngs=nnx.Rngs(params=0, dropout=1))
  model.eval()
  x = np.random.default_rng(0).random((3, 28, 28, 1)).astype(np.float32)
  assert model.features(x).shape == (3, 7 * 7 * 16)
  np.testing.assert_allclose(model.head(model.features(x)), model(x), rtol=1e-6)
