"""The ensemble-interpretation study end to end on its quick config."""

import os

import numpy as np
import pytest

from experiments import ensemble_interpretation
from experiments.configs import ensemble_interpretation as config_lib


@pytest.mark.slow
def test_quick_study_reports_the_curve_and_the_exact_identity(tmp_path):
  config = config_lib.get_config("quick")
  out = ensemble_interpretation.train_and_evaluate(config, str(tmp_path))
  curve, exact = out["curve"], out["exact"]
  assert curve["ks"] == [1, 2, 4] and len(curve["mc_error_mean"]) == 3
  assert all(0 <= e <= 1 for e in curve["mc_error_mean"])
  for row in exact:
    if row["network"] == "dropout before the softmax layer":
      assert row["max_gap_geometric_ws"] < 1e-5  # the exact identity
    else:
      assert row["max_gap_geometric_ws"] > 1e-4
  for name in ("results.md", "mc_vs_ws.csv", "exact.csv", "mc_vs_weight_scaling.png"):
    assert os.path.getsize(tmp_path / name) > 0
  again = ensemble_interpretation.train_and_evaluate(config, str(tmp_path))  # loads results
  np.testing.assert_array_equal(again["curve"]["mc_error_mean"], curve["mc_error_mean"])
