"""Runs a study: ``python -m experiments.main --config=CONFIG_FILE[:quick] --workdir=DIR``.

The config's ``study`` field picks the study; every field can be overridden on the command
line as ``--config.FIELD=VALUE``.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import (
    active_learning,
    concrete_dropout,
    concrete_mnist,
    ensemble_interpretation,
    mc_calibration,
    regularizers,
    uci,
    uci_concrete,
    variant_comparison,
)

STUDIES = {
    "active_learning": active_learning.train_and_evaluate,
    "concrete_dropout": concrete_dropout.train_and_evaluate,
    "concrete_mnist": concrete_mnist.train_and_evaluate,
    "ensemble_interpretation": ensemble_interpretation.train_and_evaluate,
    "mc_calibration": mc_calibration.train_and_evaluate,
    "regularizers": regularizers.train_and_evaluate,
    "uci": uci.train_and_evaluate,
    "uci_concrete": uci_concrete.train_and_evaluate,
    "variant_comparison": variant_comparison.train_and_evaluate,
}

_CONFIG = config_flags.DEFINE_config_file("config", None, "A study config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where the study writes config, results, plots.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  if config.study not in STUDIES:
    raise app.UsageError(f"config.study must be one of {sorted(STUDIES)}; got {config.study!r}.")
  metrics = STUDIES[config.study](config, _WORKDIR.value)
  logging.info("Done: %s", metrics.get("summary", ""))


if __name__ == "__main__":
  app.run(main)
