"""One command per published table or figure: runs a study, then copies its report into results/.

    python scripts/reproduce.py STUDY[:OPTION] [--workdir DIR] [--datasets a,b]
        [--results_dir DIR] [-- --config.FIELD=VALUE ...]

For example ``python scripts/reproduce.py variant_comparison:full`` or
``python scripts/reproduce.py uci --datasets yacht,bostonHousing``. Every run is resumable:
the same command after an interruption keeps what finished. Arguments after ``--`` go to
``experiments.main`` unchanged (config overrides). The docs' generated blocks are refreshed
(`update_docs`) when the results go to the repository's ``results/``. ``--list`` prints the
studies with their options and output files.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from dropjax.data import uci  # noqa: E402
from dropjax.data.paths import DATA_DIR_ENV  # noqa: E402
from scripts import update_docs  # noqa: E402  (ROOT is on sys.path from here on)


def _dashed(option: str) -> str:
  return option.replace("_", "-")


@dataclasses.dataclass(frozen=True)
class Study:
  """How one study is run and where its report goes.

  Attributes:
    config: the study's folder under experiments/ (its config is ``config.py`` there).
    default_option: the option used when none is given ("" = the config's default).
    outputs: ``option -> {workdir file: results file}``.
    datasets: the UCI datasets run one by one (each a ``--config.dataset``), or ().
    table_script: a script under scripts/ that writes the results from the workdir.
  """

  config: str
  default_option: str
  outputs: Callable[[str], dict[str, str]]
  datasets: tuple[str, ...] = ()
  table_script: str | None = None


_UCI_DATASETS = ("yacht", "bostonHousing", "energy", "kin8nm", "power-plant",
                 "naval-propulsion-plant", "protein-tertiary-structure")


def _variant_comparison(option: str) -> dict[str, str]:
  table, files = (("variant-comparison-table", "variant_comparison") if not option else
                  (f"variant-comparison-{_dashed(option)}", f"variant_comparison_{option}"))
  return {"results.md": f"{table}.md", "results.csv": f"{files}.csv",
          "variant_comparison.png": f"{files}.png"}


STUDIES = {
    "variant_comparison": Study("variant_comparison", "", _variant_comparison),
    "uci": Study("uci", "", lambda o: {}, datasets=_UCI_DATASETS,
                 table_script="uci_table.py"),
    "uci_concrete": Study("uci_concrete", "", lambda o: {},
                          datasets=("yacht", "bostonHousing", "energy"),
                          table_script="uci_concrete_table.py"),
    "ensemble": Study("ensemble_interpretation", "mnist", lambda o: {
        "results.md": f"ensemble-{_dashed(o)}.md",
        "mc_vs_weight_scaling.png": f"ensemble_{o}.png"}),
    "calibration": Study("mc_calibration", "mnist", lambda o: {
        "results.md": f"calibration-{_dashed(o)}.md", "shift.png": f"calibration_{o}.png"}),
    "active_learning": Study("active_learning", "digits", lambda o: {
        "results.md": f"active-learning-{_dashed(o)}.md",
        "curves.png": f"active_learning_{o}.png"}),
    "concrete_synthetic": Study("concrete_dropout", "", lambda o: {
        "results.md": f"concrete-synthetic{'-' + _dashed(o) if o else ''}.md",
        "learned_rates.png": f"concrete_synthetic{'_' + o if o else ''}.png"}),
    "concrete_mlp": Study("concrete_mnist", "mnist", lambda o: {
        "results.md": f"concrete-mlp-{_dashed(o)}.md",
        "learned_rates.png": f"concrete_mlp_{o}.png"}),
    "finetuning": Study("finetuning", "digits", lambda o: {
        "results.md": f"finetuning-{_dashed(o)}.md", "finetuning.png": f"finetuning_{o}.png"}),
    "regularizers": Study("regularizers", "digits", lambda o: {
        "results.md": f"regularizers-{_dashed(o)}.md",
        "regularizers.png": f"regularizers_{o}.png"}),
}
# Options that are the config's default (passed to it as no option).
_DEFAULT_OPTIONS = {"digits"}


def table_name(study: Study, option: str) -> str:
  """The file name (no suffix) a study's table script writes for ``option``:
  ``uci-table``, or ``uci-table-threefry`` for ``uci:threefry``."""
  stem = study.table_script.removesuffix("_table.py").replace("_", "-") + "-table"
  return f"{stem}-{_dashed(option)}" if option else stem


def reproduce_command(name: str, option: str) -> str:
  """The command a table prints under itself: ``python scripts/reproduce.py uci:threefry``."""
  return f"python scripts/reproduce.py {name}{':' + option if option else ''}"


def parse_study(spec: str) -> tuple[str, Study, str]:
  """``"name[:option]"`` -> ``(name, study, option)``, with a clear error for unknown names."""
  name, _, option = spec.partition(":")
  if name not in STUDIES:
    raise SystemExit(f"Unknown study {name!r}; the studies are {sorted(STUDIES)}.")
  study = STUDIES[name]
  return name, study, option or study.default_option


def config_arg(study: Study, option: str) -> str:
  path = os.path.join("experiments", study.config, "config.py")
  return path if option in ("", *_DEFAULT_OPTIONS) else f"{path}:{option}"


def _environment() -> dict[str, str]:
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
  # The data beside a checkout, as the Makefile assumes; studies on the embedded digits need
  # none, and the others say where they looked when it is missing.
  shared = os.path.join(os.path.dirname(ROOT), "shared", "data")
  if not env.get(DATA_DIR_ENV) and os.path.isdir(shared):
    env[DATA_DIR_ENV] = shared
  return env


def _run(args: list[str]) -> None:
  print("+", " ".join(args), flush=True)
  subprocess.run([sys.executable, *args], cwd=ROOT, env=_environment(), check=True)


def reproduce(spec: str, workdir: str | None = None, datasets: list[str] | None = None,
              results_dir: str | None = None, overrides: list[str] = ()) -> dict[str, str]:
  """Runs ``spec`` and copies its outputs; returns ``{results file: workdir file}``."""
  name, study, option = parse_study(spec)
  workdir = os.path.abspath(workdir or os.path.join(
      ROOT, "runs", name + (f"_{option}" if option else "")))
  results_dir = os.path.abspath(results_dir or os.path.join(ROOT, "results"))
  os.makedirs(results_dir, exist_ok=True)
  base = ["-m", "experiments.main", f"--config={config_arg(study, option)}",
          f"--workdir={workdir}", *overrides]
  if study.datasets:
    if datasets:
      try:
        chosen = [uci.canonical_name(d) for d in datasets]
      except ValueError as e:
        raise SystemExit(f"--datasets: {e}") from None
    else:  # every dataset the data dir holds, as the table is built from what ran
      root = _environment().get(DATA_DIR_ENV, "")
      chosen = [d for d in study.datasets if os.path.isdir(os.path.join(root, "uci", d, "data"))]
      for d in sorted(set(study.datasets) - set(chosen)):
        print(f"skipping {d}: not in {os.path.join(root or '$' + DATA_DIR_ENV, 'uci')}")
      if not chosen:
        raise SystemExit(f"No UCI dataset under {root or '$' + DATA_DIR_ENV!r}/uci: set "
                         f"{DATA_DIR_ENV} (here the data is in ../shared/data).")
    for dataset in chosen:
      _run([*base, f"--config.dataset={dataset}"])
  else:
    if datasets:
      raise SystemExit(f"--datasets applies to the UCI studies only, not {name!r}.")
    _run(base)
  copied = {}
  if study.table_script:
    _run([os.path.join("scripts", study.table_script), "--workdir", workdir,
          "--out", results_dir, "--name", table_name(study, option),
          "--command", reproduce_command(name, option)])
  for source, target in study.outputs(option).items():
    shutil.copyfile(os.path.join(workdir, source), os.path.join(results_dir, target))
    copied[os.path.join(results_dir, target)] = os.path.join(workdir, source)
  if results_dir == os.path.join(ROOT, "results"):
    update_docs.main()
  return copied


def main(argv: list[str] | None = None) -> None:
  argv = sys.argv[1:] if argv is None else argv
  overrides: list[str] = []
  if "--" in argv:
    i = argv.index("--")
    argv, overrides = argv[:i], argv[i + 1:]
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("study", nargs="?", help="STUDY[:OPTION], e.g. variant_comparison:full")
  parser.add_argument("--workdir", default=None, help="default: runs/STUDY[_OPTION]")
  parser.add_argument("--datasets", default=None, help="comma-separated, UCI studies only")
  parser.add_argument("--results_dir", default=None, help="default: the repository's results/")
  parser.add_argument("--list", action="store_true", help="print the studies and exit")
  args = parser.parse_args(argv)
  if args.list or args.study is None:
    for name, study in STUDIES.items():
      outputs = study.outputs(study.default_option) or {
          "": f"results/{table_name(study, study.default_option)}.md "
              f"(scripts/{study.table_script})"}
      print(f"{name}[:option]  config {study.config}, default option "
            f"{study.default_option or '(none)'} -> {', '.join(outputs.values())}")
    return
  datasets = args.datasets.split(",") if args.datasets else None
  for target in reproduce(args.study, args.workdir, datasets, args.results_dir, overrides):
    print(f"wrote {os.path.relpath(target, ROOT)}")


if __name__ == "__main__":
  main()
