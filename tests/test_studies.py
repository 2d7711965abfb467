"""The study contract, once for every registered study: its quick config runs, writes the
report's files, and a second run in a fresh folder gives the same numbers."""

import importlib
import json
import math
import os

import ml_collections
import pytest

from dropjax import masks, summaries
from experiments import main, study

# Keys whose values are wall-clock measurements, which no two runs share.
_TIMING_WORDS = ("seconds", "step_ms", "overhead", "_time")


def _numbers(value):
  """``value`` without wall-clock timings (and with NaN comparable)."""
  if isinstance(value, dict):
    return {k: _numbers(v) for k, v in value.items()
            if not any(w in k for w in _TIMING_WORDS)}
  if isinstance(value, list):
    return [_numbers(v) for v in value]
  if isinstance(value, float) and math.isnan(value):
    return "nan"
  return value


# The costliest quick configs, cut as their own tests cut them (every variant, method and
# grid point trains in those tests, and the rate tuning is tested there), to keep the
# suite's time: each study here runs twice.
_CUTS = {"variant_comparison": {"variants": ("none", "dropout"), "tune_scales": (1.0,)},
         "regularizers": {"models": ("mlp",), "methods": ("none", "dropout")},
         "finetuning": {"train_sizes": (20,)}}


def _quick_config(name, data_dir):
  config = importlib.import_module(f"experiments.{name}.config").get_config("quick")
  for field, value in _CUTS.get(name, {}).items():
    setattr(config, field, value)
  if "data_dir" in config and name.startswith("uci"):
    config.data_dir = data_dir
  return config


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(main.STUDIES))
def test_quick_config_writes_its_report_and_repeats_its_numbers(name, tmp_path, request):
  data_dir = request.getfixturevalue("data_dir") if name.startswith("uci") else ""
  config = _quick_config(name, data_dir)
  registered = main.STUDIES[name]
  assert isinstance(registered, study.Study) and registered.name == name == config.study

  first = main.run_study(config, str(tmp_path / "a"))
  folder = registered.folder(config, str(tmp_path / "a"))
  for file in ("config.json", "results.md", "metrics.json"):
    assert os.path.getsize(os.path.join(folder, file)) > 0, file
  with open(os.path.join(folder, "metrics.json")) as f:
    assert _numbers(json.load(f)) == _numbers(json.loads(json.dumps(first)))
  assert name.startswith("uci") or any(f.endswith(".png") for f in os.listdir(folder))
  # Every study writes training curves (TensorBoard files + scalars.jsonl) per section.
  curves = [root for root, _, files in os.walk(os.path.join(folder, "curves"))
            if "scalars.jsonl" in files]
  assert curves, f"{name} wrote no training curves under {folder}/curves"
  for logdir in curves:
    series = summaries.read_scalars(logdir)
    assert series and all(math.isfinite(v) for s in series.values() for _, v in s), logdir
    assert any(f.startswith("events.out.tfevents.") for f in os.listdir(logdir))

  second = main.run_study(config, str(tmp_path / "b"))
  assert _numbers(second) == _numbers(first)


def test_the_runner_loads_data_once_before_the_folder_and_hands_it_to_the_study(tmp_path):
  loads = []

  def load_data(config):
    if config.bad:
      raise ValueError("bad data")
    loads.append(object())
    return loads[-1]

  def train_and_evaluate(config, sections):
    assert sections.data is loads[-1]
    return study.Report(summary={"x": sections("value", lambda: 1.0)}, markdown="x\n")

  toy = study.Study("toy", train_and_evaluate, load_data=load_data)
  config = ml_collections.ConfigDict({"study": "toy", "seed": 0, "mask_min_bits": 8,
                                      "bad": True})
  with pytest.raises(ValueError, match="bad data"):
    study.run(toy, config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run")  # refused before the folder recorded it
  config.bad = False
  assert study.run(toy, config, str(tmp_path / "run")) == {"x": 1.0}
  assert len(loads) == 1


def test_the_runner_floors_the_automatic_mask_width_at_the_config(tmp_path):
  seen = []

  def train_and_evaluate(config, sections):
    seen.append(masks.resolve_bits(0.5, None))
    return study.Report(summary={"x": 1.0}, markdown="x\n")

  toy = study.Study("toy", train_and_evaluate)
  for min_bits in (8, 1):
    config = ml_collections.ConfigDict({"study": "toy", "seed": 0, "mask_min_bits": min_bits})
    study.run(toy, config, str(tmp_path / f"run{min_bits}"))
  assert seen == [8, 1]
  assert masks.resolve_bits(0.5, None) == 1  # outside a study: the library's default


def test_compilation_cache_flag_turns_the_cache_on_and_off(tmp_path, monkeypatch):
  import jax

  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "from_env"))
  before = (jax.config.jax_compilation_cache_dir, jax.config.jax_enable_compilation_cache,
            jax.config.jax_persistent_cache_min_compile_time_secs)
  try:
    assert main.use_compilation_cache(None) == str(tmp_path / "from_env")
    assert main.use_compilation_cache(str(tmp_path / "c")) == str(tmp_path / "c")
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "c")
    assert jax.config.jax_enable_compilation_cache
    # "none" must turn it off even when JAX would read the directory from the environment.
    assert main.use_compilation_cache("none") is None
    assert not jax.config.jax_enable_compilation_cache
  finally:
    jax.config.update("jax_compilation_cache_dir", before[0])
    jax.config.update("jax_enable_compilation_cache", before[1])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", before[2])
