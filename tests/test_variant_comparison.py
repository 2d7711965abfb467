"""The main job end to end on its quick config: every variant, report files, resume."""

import json
import os

import numpy as np
import pytest

from experiments import main
from experiments.variant_comparison import config as config_lib
from experiments.variant_comparison import study as variant_comparison


@pytest.mark.slow
def test_quick_run_reports_every_variant_and_resumes_to_the_same_numbers(tmp_path):
  config = config_lib.get_config("quick")
  # The baselines, a tuned fixed-rate variant, a feature-map one and a learned rate; every
  # registered variant trains in tests/test_models_train.py, which keeps this one short.
  config.variants = ("none", "dropout", "dropblock", "concrete")
  workdir = str(tmp_path / "run")
  first = main.run_study(config, workdir)
  names = [r["variant"] for r in first["rows"]]
  assert names == list(config.variants)
  for name in ("config.json", "results.md", "results.csv", "metrics.json",
               "variant_comparison.png"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0
  table = open(os.path.join(workdir, "results.md")).read()
  assert all(f"| {n} |" in table for n in names)
  for row in first["rows"]:
    for key in ("accuracy_det", "accuracy_mc", "nll_mc", "ece_mc", "brier_det"):
      assert np.isfinite(row[key]) and np.isfinite(row[f"{key}_se"])
      # Mean and s.e. are over the seeds' own runs, stored one file per seed.
      seeds = [json.load(open(os.path.join(
          workdir, "variants", f"{row['variant']}@{row['scale']:g}-seed{s}.json")))[key]
          for s in range(config.num_seeds)]
      assert row[f"{key}_seeds"] == seeds
      assert row[key] == pytest.approx(np.mean(seeds))
      assert row[f"{key}_se"] == pytest.approx(np.std(seeds, ddof=1) / np.sqrt(len(seeds)))
  assert len(first["rows"][names.index("concrete")]["learned_rates"]) == config.num_seeds
  # Paired differences: every variant against none and dropout, per seed.
  by_name = {r["variant"]: r for r in first["rows"]}
  for p in first["paired"]:
    diffs = np.subtract(by_name[p["variant"]]["nll_mc_seeds"],
                        by_name[p["baseline"]]["nll_mc_seeds"])
    assert p["nll_mc"] == pytest.approx(diffs.mean())
    assert p["nll_mc_se"] == pytest.approx(diffs.std(ddof=1) / np.sqrt(len(diffs)))
    assert p["nll_mc_decided"] == (abs(p["nll_mc"]) > 2 * p["nll_mc_se"])
  # Each pair once: none vs dropout appears as dropout minus none only.
  assert {(p["variant"], p["baseline"]) for p in first["paired"]} == {
      (v, b) for b in ("none", "dropout") for v in names if v not in ("none", b)}
  assert "Paired differences" in table and "What the seeds decide" in table
  # Tuning: every fixed-rate variant ran at each scale; the kept run is the validation argmin.
  for row in first["rows"]:
    candidates = row["candidates"]
    if row["variant"] in ("none", "concrete"):
      assert [c["scale"] for c in candidates] == [1.0]
      continue
    assert [c["scale"] for c in candidates] == list(config.tune_scales)
    scores = [c["validation_score"] for c in candidates]
    assert row["scale"] == candidates[int(np.argmin(scores))]["scale"]
    assert row["validation_score"] == min(scores)
    assert row["dense_rate"] == pytest.approx(row["scale"] * config.dense_rate[row["variant"]])
    stored = json.load(open(os.path.join(workdir, "variants",
                                         f"{row['variant']}@{row['scale']:g}-seed0.json")))
    assert stored["nll_mc"] == row["nll_mc_seeds"][0]  # seed 0 is the kept tuning run
  # 2 model sizes x 2 training-set sizes x 2 rates x 2 seeds, each evaluated.
  assert len(first["rate_sweep"]) == 16 and {r["rate"] for r in first["rate_sweep"]} == {0.0, 0.5}
  assert [r["batch_norm"] for r in first["batchnorm"]] == [
      "none", "after_dropout", "before_dropout"] * config.num_seeds
  assert len(first["lstm"]) == 3 * config.num_seeds
  assert all(np.isfinite(r["nll_mc"]) for r in first["lstm"])
  for heading in ("When does dropout hurt?", "Dropout and BatchNorm", "LSTM on the digits"):
    assert heading in table

  # A run killed after some variants: drop two finished results and run again.
  for name in ("dropout@0.5-seed0", "dropout@1-seed0", "concrete@1-seed1"):
    os.remove(os.path.join(workdir, "variants", f"{name}.json"))
  resumed = main.run_study(config, workdir)
  timing = ("train_seconds", "step_ms", "overhead", "seconds")
  timing_keys = lambda k: any(k.startswith(t) for t in timing)
  strip = lambda rows: [{k: v for k, v in r.items() if not timing_keys(k)} | {
      "candidates": [{k: v for k, v in c.items() if k not in timing} for c in r["candidates"]]}
      for r in rows]
  assert strip(resumed["rows"]) == strip(first["rows"])  # retrained ones bitwise equal
  assert resumed["paired"] == first["paired"]


def test_resuming_under_a_different_config_is_refused(tmp_path):
  config = config_lib.get_config("quick")
  config.variants = ("none",)
  workdir = str(tmp_path / "run")
  main.run_study(config, workdir)
  config.seed = 1
  with pytest.raises(ValueError, match=r"different config \(fields \['seed'\]\)"):
    main.run_study(config, workdir)
  assert json.load(open(os.path.join(workdir, "config.json")))["seed"] == 0
  # How a run executes may change on resume: MC samples are keyed by index, not by chunk.
  config.seed = 0
  config.mc_chunk_size = 1
  main.run_study(config, workdir)
  assert json.load(open(os.path.join(workdir, "config.json")))["mc_chunk_size"] == 1


@pytest.mark.parametrize("field,value,match", [
    ("tune_metric", "accuracy_mc", r"tune_metric must be one of \('nll_mc'"),
    ("tune_scales", (), r"tune_scales must be a non-empty tuple"),
    ("tune_scales", (1.0, 2.0), r"2 x the rates of 'dropout' gives .* \[0, 1\)"),
    ("num_seeds", 1, r"num_seeds must be an integer >= 2"),
])
def test_bad_tuning_setups_are_refused_before_training(tmp_path, field, value, match):
  config = config_lib.get_config("quick")
  config[field] = value
  with pytest.raises(ValueError, match=match):
    main.run_study(config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run")


def test_unknown_config_option_lists_the_options():
  with pytest.raises(ValueError, match="options: 'full', 'mnist', 'mnist_cpu', 'quick'"):
    config_lib.get_config("fast")


@pytest.mark.slow
def test_runs_on_mnist_from_the_data_dir(data_dir, tmp_path):
  config = config_lib.get_config("quick")
  config.dataset, config.data_dir, config.train_size = "mnist", data_dir, 256
  config.variants = ("none", "dropblock")
  config.tune_scales = (1.0,)  # tuning is the digits test's subject; this one is the data's
  out = main.run_study(config, str(tmp_path))
  assert [r["variant"] for r in out["rows"]] == ["none", "dropblock"]
  assert all(0 <= r["accuracy_mc"] <= 1 for r in out["rows"])
  assert {r["train_examples"] for r in out["rate_sweep"]} == {26, 256}
  text = (tmp_path / "results.md").read_text()
  # Srivastava et al.'s Table 2 beside ours, with the protocol table that says how they differ.
  assert "Dropout NN + max-norm, ReLU, 3 x 1024 | 1.06" in text
  assert "| ours: none, residual CNN" in text and "| setting | ours | reference | source |" in text
  assert "LSTM on the mnist images read row by row** (28 steps" in text


@pytest.mark.parametrize("option", [None, "quick", "full", "mnist", "mnist_cpu"])
def test_every_config_option_passes_the_checks(option):
  from experiments import config_checks

  config = config_lib.get_config(option)
  config_checks.check_config(config)
  variant_comparison.check_config(config)
  assert config.num_seeds >= 2
