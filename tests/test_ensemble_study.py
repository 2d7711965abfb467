"""The ensemble-interpretation study end to end on its quick config, and its statistics."""

import os

import numpy as np
import pytest

from experiments import config_checks, main, reporting
from experiments.ensemble_interpretation import config as config_lib
from experiments.ensemble_interpretation import study as ensemble_interpretation


@pytest.mark.slow
def test_quick_study_reports_paired_differences_and_the_exact_identity(tmp_path):
  config = config_lib.get_config("quick")
  out = main.run_study(config, str(tmp_path))
  summary, runs, exact = out["summary"], out["runs"], out["exact"]
  assert [r["k"] for r in summary["rows"]] == [1, 2, 4] and len(runs) == config.num_seeds
  for j, row in enumerate(summary["rows"]):
    diffs = [run["per_k"][j]["mc_error"] - run["ws_error"] for run in runs]
    # The paired difference per seed is the difference of the two error rates.
    np.testing.assert_allclose([run["per_k"][j]["mc_minus_ws"] for run in runs], diffs,
                               atol=1e-12)
    np.testing.assert_allclose(row["mc_minus_ws"], np.mean(diffs), atol=1e-12)
    assert row["decided"] == (abs(row["mc_minus_ws"]) > 2 * row["mc_minus_ws_se"])
  # Seeds are different runs: their weight-scaling errors differ.
  assert runs[0]["ws_error"] != runs[1]["ws_error"] or runs[0]["per_k"] != runs[1]["per_k"]
  for row in exact:
    if row["network"] == "dropout before the softmax layer":
      assert row["max_gap_geometric_ws"] < 1e-5  # the exact identity
    else:
      assert row["max_gap_geometric_ws"] > 1e-4
  for name in ("results.md", "results.csv", "exact.csv", "mc_vs_weight_scaling.png",
               "seeds/seed0.json", "seeds/seed1.json"):
    assert os.path.getsize(tmp_path / name) > 0
  text = (tmp_path / "results.md").read_text()
  assert "| setting | ours | reference | source |" in text and "MC(k) - weight scaling" in text
  # A resumed run loads every seed and reports the same numbers.
  os.remove(tmp_path / "results.md")
  again = main.run_study(config, str(tmp_path))
  assert again["summary"]["rows"] == summary["rows"]


def test_paired_error_difference_is_mcnemars_discordant_rate():
  a = np.array([1, 1, 0, 0, 1, 0, 0, 0], bool)
  b = np.array([1, 0, 1, 0, 0, 0, 0, 0], bool)
  out = reporting.paired_error_difference(a, b)
  assert (out["a_only"], out["b_only"]) == (2, 1)
  assert out["difference"] == pytest.approx((2 - 1) / 8)
  d = a.astype(float) - b
  assert out["se"] == pytest.approx(d.std(ddof=1) / np.sqrt(8))
  with pytest.raises(ValueError, match="same n"):
    reporting.paired_error_difference(a, b[:4])


def _summary(diffs_per_k, ws=0.02):
  config = config_lib.get_config("quick")
  config.ks = tuple(range(1, len(diffs_per_k) + 1))
  runs = [{"ws_error": ws + 0.001 * s, "train_seconds": 1.0, "mc_seconds": 1.0,
           "test_images": 100,
           "per_k": [{"mc_error": ws + 0.001 * s + d[s], "mc_minus_ws": d[s],
                      "mc_minus_ws_se": 0.01} for d in diffs_per_k]}
          for s in range(len(diffs_per_k[0]))]
  return ensemble_interpretation.summarise_seeds(config, runs)


def test_k_match_and_k_undecided_need_every_larger_k():
  # k=1 clearly worse, k=2 not decided, k=3 decided worse again, k=4 and 5 not decided.
  summary = _summary([[0.05, 0.06, 0.05], [0.01, -0.01, 0.0], [0.02, 0.021, 0.019],
                      [-0.01, 0.0, 0.005], [0.0, -0.002, -0.001]])
  assert [r["decided"] for r in summary["rows"]] == [True, False, True, False, False]
  assert summary["k_undecided"] == 4
  assert summary["k_match"] == 4  # k=3 is worse on average; k=4 and 5 are at or below
  assert summary["k_not_worse"] == 4
  never = _summary([[0.05, 0.06, 0.05], [0.03, 0.031, 0.029]])
  assert never["k_undecided"] is None and never["k_match"] is None
  assert never["k_not_worse"] is None
  text = ensemble_interpretation.findings(never, 50)
  assert any("not reproduced" in line for line in text)
  # MC clearly better than weight scaling at the largest k: reached, and said to be better.
  better = _summary([[0.05, 0.06, 0.05], [-0.03, -0.031, -0.029]])
  assert better["k_not_worse"] == 2 and better["k_undecided"] is None
  text = ensemble_interpretation.findings(better, 50)
  assert not any("not reproduced" in line for line in text)
  assert any("MC is better than weight scaling by more than 2 s.e." in line for line in text)


@pytest.mark.parametrize("field,value,message", [
    ("ks", (1, 5, 5), "strictly increasing"),
    ("num_seeds", 1, ">= 2"),
])
def test_bad_configs_are_refused(field, value, message):
  config = config_lib.get_config("quick")
  config[field] = value
  with pytest.raises(config_checks.ConfigError, match=message):
    config_checks.check_config(config)
