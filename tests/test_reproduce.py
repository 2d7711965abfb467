"""scripts/reproduce.py: one command per published table, for every study."""

import glob
import os
import re

import pytest

from scripts import reproduce

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The options whose tables are published (the docs show them).
_PUBLISHED = ["variant_comparison", "variant_comparison:full", "variant_comparison:mnist_cpu",
              "ensemble", "calibration", "calibration:mnist_lenet", "active_learning",
              "active_learning:mnist_cpu", "concrete_synthetic", "concrete_mlp", "regularizers",
              "regularizers:mnist_cpu", "calibration:digits", "finetuning", "finetuning:mnist"]


@pytest.mark.parametrize("spec", _PUBLISHED)
def test_published_outputs_are_committed(spec):
  _, study, option = reproduce.parse_study(spec)
  for target in study.outputs(option).values():
    assert os.path.exists(os.path.join(_ROOT, "results", target)), target


def test_every_docs_block_is_written_by_a_study_or_a_benchmark():
  produced = {os.path.splitext(t)[0] for spec in _PUBLISHED
              for t in reproduce.parse_study(spec)[1].outputs(reproduce.parse_study(spec)[2])
              .values()}
  produced |= {"uci-table", "uci-table-threefry", "uci-concrete-table"}  # table scripts
  produced |= {os.path.splitext(os.path.basename(p))[0]
               for p in glob.glob(os.path.join(_ROOT, "results", "bench_*.md"))}
  produced.add("variant-comparison-budget")  # scripts/compare_variant_budgets.py
  markers = set()
  for page in [os.path.join(_ROOT, "README.md"),
               *glob.glob(os.path.join(_ROOT, "docs", "**", "*.md"), recursive=True)]:
    with open(page) as f:
      markers |= set(re.findall(r"<!-- ([\w-]+) -->", f.read()))
  assert markers <= produced, markers - produced


def test_unknown_studies_and_datasets_are_named():
  with pytest.raises(SystemExit, match=r"Unknown study 'uci_grid'.*'variant_comparison'"):
    reproduce.parse_study("uci_grid")
  with pytest.raises(SystemExit, match=r"--datasets: .*'bostn'"):
    reproduce.reproduce("uci:quick", datasets=["bostn"])
  with pytest.raises(SystemExit, match="--datasets applies to the UCI studies only"):
    reproduce.reproduce("ensemble:quick", datasets=["yacht"])


def test_config_options():
  assert reproduce.config_arg(reproduce.STUDIES["active_learning"], "digits") == \
      os.path.join("experiments", "active_learning", "config.py")
  assert reproduce.config_arg(reproduce.STUDIES["variant_comparison"], "full") == \
      os.path.join("experiments", "variant_comparison", "config.py:full")
  # A table script's file for each option: the default, or the option's own.
  uci = reproduce.STUDIES["uci"]
  assert reproduce.table_name(uci, "") == "uci-table"
  assert reproduce.table_name(uci, "threefry") == "uci-table-threefry"
  # ... and the command it prints, which must run that option.
  assert reproduce.reproduce_command("uci", "threefry") == \
      "python scripts/reproduce.py uci:threefry"
  assert reproduce.reproduce_command("uci", "") == "python scripts/reproduce.py uci"


@pytest.mark.slow
def test_uci_quick_runs_end_to_end_from_a_clean_environment(tmp_path, data_dir, monkeypatch):
  """The dataset loop and the table script run as subprocesses, as from a shell: no
  PYTHONPATH set by the caller, the repository found by the script itself."""
  monkeypatch.delenv("PYTHONPATH", raising=False)
  monkeypatch.setenv("DROPJAX_DATA_DIR", data_dir)
  monkeypatch.chdir(tmp_path)
  results = tmp_path / "results"
  reproduce.main(["uci:quick", "--datasets", "yacht", "--workdir", str(tmp_path / "w"),
                  "--results_dir", str(results), "--", "--config.num_splits=1"])
  text = (results / "uci-table-quick.md").read_text()
  assert re.search(r"^\| yacht \| 1 \|", text, flags=re.M), text
  assert "`python scripts/reproduce.py uci:quick`" in text
  assert (results / "uci_table_quick.csv").exists()
