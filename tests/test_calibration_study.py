"""The MC-calibration study end to end on its quick config, and its rotation."""

import numpy as np
import pytest

from experiments import mc_calibration
from experiments.configs import mc_calibration as config_lib


def test_rotation_by_90_degrees_is_exact_and_0_is_the_identity():
  images = np.random.default_rng(0).uniform(size=(3, 8, 8, 1)).astype(np.float32)
  np.testing.assert_array_equal(mc_calibration.rotate(images, 0), images)
  np.testing.assert_allclose(mc_calibration.rotate(images, 90), np.rot90(images, 1, axes=(1, 2)),
                             atol=1e-6)


@pytest.mark.slow
def test_quick_study_reports_every_method_shift_and_ood(tmp_path):
  out = mc_calibration.train_and_evaluate(config_lib.get_config("quick"), str(tmp_path))
  methods = [r["method"] for r in out["clean"]]
  assert methods == ["deterministic (dropout net)", "temperature scaling",
                     "vanilla (one member)", "deep ensemble (2)", "MC dropout (S=1)",
                     "MC dropout (S=4)"]
  for row in out["clean"] + out["mean_over_shift"]:
    assert 0 <= row["ece"] <= 1 and np.isfinite(row["nll"])
  assert {r["score"] for r in out["ood"]} >= {"MC dropout: mutual information (BALD)"}
  assert all(0 <= r["auroc"] <= 1 for r in out["ood"])
  assert len(out["findings"]) == 3
  for finding in out["findings"]:  # checked at every rotated angle of the config
    assert finding["angles"] == len(config_lib.get_config("quick").angles) - 1
    assert 0 <= finding["angles_holding"] <= finding["angles"]
  text = (tmp_path / "results.md").read_text()
  assert "Ovadia et al. 2019" in text and (tmp_path / "shift.png").stat().st_size > 0


def test_published_findings_judge_the_methods_they_name():
  config = config_lib.get_config("quick")
  mc, ensemble = f"MC dropout (S={max(config.mc_samples)})", "deep ensemble (2)"
  by = {"temperature scaling": {"nll": 1.0, "ece": 0.10}, ensemble: {"nll": 0.5, "ece": 0.2},
        mc: {"nll": 0.9, "ece": 0.05}}
  claims = dict(mc_calibration.published_findings(config))
  assert [claim(by) for claim in claims.values()] == [True, True, True]
  by[mc] = {"nll": 0.4, "ece": 0.3}  # MC dropout now beats the ensemble, loses on ECE
  assert [claim(by) for claim in claims.values()] == [False, False, True]


def test_lenet_option_runs_the_study_with_lenet5(tmp_path):
  config = config_lib.get_config("quick")
  config.model = "lenet"
  out = mc_calibration.train_and_evaluate(config, str(tmp_path))
  assert all(0 <= r["accuracy"] <= 1 for r in out["clean"])
  assert config_lib.get_config("mnist_lenet").dropout_rate == 0.303
  config.model = "resnet"
  with pytest.raises(ValueError, match="'mlp' or 'lenet'"):
    mc_calibration.train_and_evaluate(config, str(tmp_path / "other"))


def test_lenet5_features_then_head_is_the_model():
  from flax import nnx

  from dropjax.models import LeNet5

  model = LeNet5(10, spatial_size=28, rngs=nnx.Rngs(params=0, dropout=1))
  model.eval()
  x = np.random.default_rng(0).random((3, 28, 28, 1)).astype(np.float32)
  assert model.features(x).shape == (3, 7 * 7 * 16)
  np.testing.assert_allclose(model.head(model.features(x)), model(x), rtol=1e-6)
