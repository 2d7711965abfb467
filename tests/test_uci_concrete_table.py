"""The Concrete UCI table script on results of both head layouts."""

import importlib.util
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _script():
  spec = importlib.util.spec_from_file_location(
      "uci_concrete_table", os.path.join(ROOT, "scripts", "uci_concrete_table.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _result(names, history, rows=()):
  pair = [0.5, 0.1]
  return {"rows": list(rows), "n_splits": 2, "epochs": 1000, "mc_rmse": pair,
          "log_likelihood": [-2.0, 0.1],
          "coverage_0.95": [0.9, 0.01], "seconds": {"train": 60.0, "test": 6.0},
          "rate_history": history, **({"rate_names": names} if names else {}),
          **{f"rate_{n}": [0.01 * (i + 1), 0.001] for i, n in enumerate(names or
                                                                       ["input", "hidden"])}}


def test_table_shows_shared_and_separate_heads_and_plots_p_against_epochs(tmp_path, monkeypatch):
  work, out = tmp_path / "work", tmp_path / "out"
  for name, result in (
      ("yacht", _result(["input", "mean_head", "log_var_head"],
                        [{"epoch": 500, "value": [0.1, 0.1, 0.1]},
                         {"epoch": 1000, "value": [0.05, 0.2, 0.3]}],
                        # Concrete minus grid per split: RMSE +0.1, +0.5; LL -1.0, -1.0.
                        [{"split": s, "mc_rmse": 0.5 + d, "grid_mc_rmse": 0.5,
                          "log_likelihood": -3.0, "grid_log_likelihood": -2.0}
                         for s, d in enumerate((0.1, 0.5))])),
      ("bostonHousing", _result(None, [[0.1, 0.1], [0.02, 0.05]])),  # written before the layouts
  ):
    (work / name).mkdir(parents=True)
    (work / name / "results.json").write_text(json.dumps(result))
  config = {"separate_heads": True, "length_scale": 0.01, "init_rate": 0.1, "temperature": 0.1,
            "batch_size": 128, "epochs_multiplier": 100, "mc_samples": 10000}
  (work / "yacht" / "config.json").write_text(json.dumps(config))
  out.mkdir()
  monkeypatch.setattr(sys, "argv", ["uci_concrete_table.py", "--workdir", str(work),
                                    "--out", str(out)])
  _script().main()
  table = (out / "uci-concrete-table.md").read_text()
  assert "| yacht | 2 | 0.010 ± 0.001 | 0.020 ± 0.001 / 0.030 ± 0.001 |" in table
  assert "| bostonHousing | 2 | 0.010 ± 0.001 | 0.020 ± 0.001 |" in table
  # Paired by split: mean +0.3, s.e. 0.2 (not beyond 2 s.e.); LL -1.0 with s.e. 0 (beyond).
  assert "| yacht | 2 | +0.300 ± 0.200 | -1.000 ± 0.000* |" in table
  assert "| bostonHousing | 2 | +" not in table  # no grid rows, no paired line
  assert (out / "uci_concrete_rates.png").stat().st_size > 0
  assert "| setting | ours | reference | source |" in table
  assert "one per output head" in table  # the only config recorded is yacht's
  config["separate_heads"] = False
  (work / "bostonHousing" / "config.json").write_text(json.dumps(config))
  _script().main()
  table = (out / "uci-concrete-table.md").read_text()
  assert ("bostonHousing: input, and one hidden layer shared by both heads; yacht: input, and "
          "one per output head") in table


def test_training_length_table_pairs_each_length_with_the_grid(tmp_path):
  workdirs = []
  for epochs, shift in ((1000, 0.5), (200, 0.1)):
    work = tmp_path / f"run{epochs}"
    result = _result(["input", "mean_head", "log_var_head"], [],
                     [{"split": s, "mc_rmse": 0.5 + shift + d, "grid_mc_rmse": 0.5,
                       "log_likelihood": -2.0, "grid_log_likelihood": -2.5}
                      for s, d in enumerate((0.0, 0.2))])
    result["epochs"] = epochs
    (work / "yacht").mkdir(parents=True)
    (work / "yacht" / "results.json").write_text(json.dumps(result))
    # A dataset run at one length only gets no row.
    if epochs == 1000:
      (work / "energy").mkdir()
      (work / "energy" / "results.json").write_text(json.dumps(result))
    workdirs.append(str(work))
  lines, rows = _script().training_length_table(workdirs)
  assert [(r["dataset"], r["epochs"]) for r in rows] == [("yacht", 200), ("yacht", 1000)]
  # Paired by split: RMSE +0.1 + (0, 0.2) -> +0.2 ± 0.1; LL +0.5 ± 0 (beyond 2 s.e.).
  assert ("| yacht | 200 | 0.010 | 0.020 | 0.030 | +0.200 ± 0.100 | +0.500 ± 0.000* | 90.0 |"
          in lines)
  assert abs(rows[1]["d_rmse"] - 0.6) < 1e-9
  assert _script().training_length_table(workdirs[:1]) == ([], [])
