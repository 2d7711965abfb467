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
  text = (tmp_path / "results.md").read_text()
  assert "Ovadia et al. 2019" in text and (tmp_path / "shift.png").stat().st_size > 0
