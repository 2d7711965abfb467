"""Runs a study: ``python -m experiments.main --config=CONFIG_FILE[:quick] --workdir=DIR``.

The config's ``study`` field picks the study; every field can be overridden on the command
line as ``--config.FIELD=VALUE``. Before any work the whole config is checked
(`experiments.config_checks`); after the study, a NaN or infinite metric in its results
ends the run with an error (exit status 1) naming the metric and its split.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import config_checks, reporting, study
from experiments.active_learning import study as active_learning
from experiments.concrete_dropout import study as concrete_dropout
from experiments.concrete_mnist import study as concrete_mnist
from experiments.ensemble_interpretation import study as ensemble_interpretation
from experiments.mc_calibration import study as mc_calibration
from experiments.regularizers import study as regularizers
from experiments.uci import study as uci
from experiments.uci_concrete import study as uci_concrete
from experiments.variant_comparison import study as variant_comparison

# Every registered study (`experiments.study.Study`), by the value of ``config.study``.
STUDIES = {module.STUDY.name: module.STUDY for module in (
    active_learning, concrete_dropout, concrete_mnist, ensemble_interpretation, mc_calibration,
    regularizers, uci, uci_concrete, variant_comparison)}

_CONFIG = config_flags.DEFINE_config_file("config", None, "A study config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where the study writes config, results, plots.")
flags.mark_flags_as_required(["config", "workdir"])


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with an unknown ``--config.FIELD`` reported as such.

  ml_collections reports one as a bare ``AttributeError: 'foo'``; this says
  ``unknown config field 'foo' (--config.foo); valid fields of config: ...`` and exits
  with status 1, as absl does for other flag errors.

  Args:
    argv: the command line.

  Returns:
    The arguments left after the flags.
  """
  try:
    config_checks.check_overrides(argv)
  except config_checks.ConfigError as e:
    sys.stderr.write(f"FATAL Flags parsing error: {e}\n")
    sys.exit(1)
  return app.parse_flags_with_usage(argv)


def run_study(config, workdir: str) -> dict:
  """Checks ``config`` whole, then runs its study in ``workdir`` (`experiments.study.run`:
  the folder, the sections, every result file).

  Args:
    config: a study config (``config.study`` names the study).
    workdir: the study's folder.

  Returns:
    The study's summary (also in ``metrics.json``).

  Raises:
    config_checks.ConfigError: a bad config, before any work.
    reporting.NonFiniteMetricError: a NaN or infinite metric in the results.
  """
  config_checks.check_config(config, studies=tuple(STUDIES))
  return study.run(STUDIES[config.study], config, workdir)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  try:
    metrics = run_study(_CONFIG.value, _WORKDIR.value)
  except (config_checks.ConfigError, reporting.NonFiniteMetricError) as e:
    # The message says it all; a traceback would bury it.
    sys.stderr.write(f"FATAL {type(e).__name__}: {e}\n")
    sys.exit(1)
  logging.info("Done: %s", metrics.get("summary", "") if isinstance(metrics, dict) else "")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
