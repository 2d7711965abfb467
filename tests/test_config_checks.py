"""The command line, config checks, data fingerprints of workdirs and the result check.

The refusals themselves are rows of the bad-input table (`bad_inputs_runs.py`); these tests
cover what those rows cannot: exit statuses, what is accepted, and what gets recorded.
"""

import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from bad_inputs_runs import write_fake_uci

from experiments import config_checks, main, reporting
from experiments.uci import config as uci_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPTIONS = (None, "quick", "mnist", "mnist_cpu", "mnist_lenet", "threefry")


def test_every_shipped_config_passes_the_checks():
  assert tuple(main.STUDIES) == config_checks.STUDIES
  checked = 0
  for study in config_checks.STUDIES:
    module = importlib.import_module(f"experiments.{study}.config")
    for option in OPTIONS:
      try:
        config = module.get_config(option)
      except ValueError:  # not an option of this study
        continue
      config_checks.check_config(config)
      checked += 1
  assert checked >= 20


def _main(*args, code=None):
  command = [sys.executable, "-m", "experiments.main", *args] if code is None else [
      sys.executable, "-c", code, *args]
  return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})


def test_command_line_refuses_unknown_fields_and_bad_values_before_any_work(tmp_path):
  workdir = tmp_path / "run"
  unknown = _main("--config=experiments/uci/config.py:quick", "--config.foo=1",
                  f"--workdir={workdir}")
  assert unknown.returncode == 1
  assert "unknown config field 'foo' (--config.foo); valid fields of config: adam_eps" in (
      unknown.stderr)
  assert "Traceback" not in unknown.stderr
  bad = _main("--config=experiments/uci/config.py:quick", "--config.segment_epochs=0",
              f"--workdir={workdir}")
  assert bad.returncode == 1
  assert "config.segment_epochs = 0" in bad.stderr and "Traceback" not in bad.stderr
  assert not workdir.exists()  # refused before the workdir was started


def test_a_study_reporting_nan_exits_non_zero_naming_the_metric(tmp_path):
  code = ("import sys; from absl import app; from experiments import main, study; "
          "main.STUDIES['concrete_dropout'] = study.Study('concrete_dropout', "
          "lambda config, sections: study.Report("
          "summary={'rows': [{'split': 0, 'mc_rmse': 0.5}, "
          "{'split': 1, 'mc_rmse': float('nan')}]}, markdown='')); "
          "sys.argv[0] = 'main'; app.run(main.main, flags_parser=main.parse_flags)")
  # A synthetic study's config: the runner reads no data before the fake study runs.
  run = _main("--config=experiments/concrete_dropout/config.py:quick", f"--workdir={tmp_path}",
              code=code)
  assert run.returncode == 1
  assert "metrics.rows[1] (split=1).mc_rmse = nan" in run.stderr


def test_published_numbers_may_be_nan_computed_ones_may_not():
  rows = {"rows": [{"n": 20, "published": [float("nan")] * 4, "rmse": 1.0,
                    "reference_mc_rmse": float("nan")}]}
  reporting.check_finite_metrics(rows)
  assert reporting.non_finite_metrics({"a": [1.0, np.float32(-np.inf)], "b": "nan"}) == [
      ("metrics.a[1]", -np.inf)]


def test_workdir_records_the_data_and_accepts_the_same_data_elsewhere(tmp_path):
  config = uci_config.get_config("quick")
  config.data_dir = str(tmp_path / "one")
  write_fake_uci(config.data_dir)
  workdir = str(tmp_path / "run")
  reporting.start_workdir(config, workdir)
  recorded = json.load(open(os.path.join(workdir, "data.json")))
  assert recorded["data_dir"] == config.data_dir
  assert set(recorded["files"]) >= {"uci/yacht/data/data.txt", "uci/yacht/data/index_test_1.txt"}
  # A copy of the same files in another dir (or DROPJAX_DATA_DIR) resumes.
  config.data_dir = str(tmp_path / "two")
  write_fake_uci(config.data_dir)
  reporting.start_workdir(config, workdir)
  assert json.load(open(os.path.join(workdir, "data.json")))["data_dir"] == config.data_dir
  # A workdir from before data.json existed is accepted and recorded from now on.
  os.remove(os.path.join(workdir, "data.json"))
  write_fake_uci(config.data_dir, **{"data.txt": "1 2 3\n" * 12})
  reporting.start_workdir(config, workdir)
  assert json.load(open(os.path.join(workdir, "data.json")))["files"] != recorded["files"]
  with pytest.raises(ValueError, match="other data"):
    config.data_dir = str(tmp_path / "one")
    reporting.start_workdir(config, workdir)


@pytest.mark.parametrize("field, other", [("mask_min_bits", 1), ("prng_impl", "keyed_hash")])
def test_a_workdir_recorded_before_a_mask_field_resumes_only_with_the_old_masks(
    tmp_path, field, other):
  config = uci_config.get_config("quick")
  config.update(reporting.FIELDS_ADDED_LATER)  # a run of the masks drawn before the fields
  config.data_dir = str(tmp_path / "data")
  write_fake_uci(config.data_dir)
  workdir = str(tmp_path / "run")
  reporting.start_workdir(config, workdir)
  path = os.path.join(workdir, "config.json")
  recorded = json.load(open(path))
  del recorded[field]  # as recorded before the field existed
  json.dump(recorded, open(path, "w"))
  reporting.start_workdir(config, workdir)  # 8 and threefry: the masks that run drew
  config[field] = other
  with pytest.raises(ValueError, match=rf"different config \(fields \['{field}'\]\)") as e:
    reporting.start_workdir(config, workdir)
  # It says what the workdir holds and what was asked, e.g. threefry against keyed_hash.
  old = reporting.FIELDS_ADDED_LATER[field]
  assert f"recorded {{{field!r}: {old!r}}}, now {{{field!r}: {other!r}}}" in str(e.value)


def test_digits_and_synthetic_studies_fingerprint_without_a_data_dir(monkeypatch):
  monkeypatch.delenv("DROPJAX_DATA_DIR", raising=False)
  from experiments.concrete_dropout import config as concrete_dropout
  from experiments.regularizers import config as regularizers

  digits = reporting.data_fingerprint(regularizers.get_config("quick"))
  assert digits == reporting.data_fingerprint(regularizers.get_config())
  assert list(digits["files"]) == ["sklearn/digits"]
  assert reporting.data_fingerprint(concrete_dropout.get_config("quick")) is None


@pytest.mark.parametrize("study", config_checks.STUDIES)
def test_unknown_config_options_are_refused_with_the_options(study):
  module = importlib.import_module(f"experiments.{study}.config")
  with pytest.raises(ValueError, match=rf"Unknown config option 'qiuck' for the {study} study; "
                                       r"options: .*'quick'"):
    module.get_config("qiuck")
  config = module.get_config("quick")
  assert (config.study, config.seed) == (study, 0)
