"""Runs a study: ``python -m experiments.main --config=CONFIG_FILE[:quick] --workdir=DIR``.

The config's ``study`` field picks the study; every field can be overridden on the command
line as ``--config.FIELD=VALUE``. Before any work the whole config is checked
(`experiments.config_checks`); after the study, a NaN or infinite metric in its results
ends the run with an error (exit status 1) naming the metric and its split.

Compiled programs are kept in JAX's persistent compilation cache (``--compilation_cache``),
so the models of one architecture (seeds, and every later run) share one compilation. A
cached program is the compiled program itself: results do not change, only the time.
"""

import os
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from experiments import config_checks, reporting, study
from experiments.active_learning import study as active_learning
from experiments.concrete_dropout import study as concrete_dropout
from experiments.concrete_mnist import study as concrete_mnist
from experiments.ensemble_interpretation import study as ensemble_interpretation
from experiments.finetuning import study as finetuning
from experiments.mc_calibration import study as mc_calibration
from experiments.regularizers import study as regularizers
from experiments.uci import study as uci
from experiments.uci_concrete import study as uci_concrete
from experiments.variant_comparison import study as variant_comparison

# Every registered study (`experiments.study.Study`), by the value of ``config.study``.
STUDIES = {module.STUDY.name: module.STUDY for module in (
    active_learning, concrete_dropout, concrete_mnist, ensemble_interpretation, finetuning,
    mc_calibration, regularizers, uci, uci_concrete, variant_comparison)}

_CONFIG = config_flags.DEFINE_config_file("config", None, "A study config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where the study writes config, results, plots.")
_CACHE = flags.DEFINE_string(
    "compilation_cache", None,
    "JAX's persistent compilation cache directory; 'none' turns it off. Default: "
    "$JAX_COMPILATION_CACHE_DIR if set, else $XDG_CACHE_HOME/dropjax/jax (~/.cache/...).")
flags.mark_flags_as_required(["config", "workdir"])


def use_compilation_cache(path: str | None) -> str | None:
  """Points JAX's persistent compilation cache at ``path`` (see ``--compilation_cache``).

  Programs that take over 0.1 s to compile are cached (JAX's default is 1 s), unless
  ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` says otherwise. Call before anything
  compiles.

  Args:
    path: a directory, ``'none'`` (no cache), or None for the default.

  Returns:
    The directory in use, or None.
  """
  if path is None:
    path = os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser(os.path.join("~", ".cache")),
        "dropjax", "jax")
  if path.lower() == "none":
    # JAX also reads JAX_COMPILATION_CACHE_DIR itself: turn the cache off, not just unset.
    jax.config.update("jax_enable_compilation_cache", False)
    return None
  jax.config.update("jax_enable_compilation_cache", True)
  jax.config.update("jax_compilation_cache_dir", path)
  if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
  return path


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
  logging.info("Compilation cache: %s", use_compilation_cache(_CACHE.value))
  try:
    metrics = run_study(_CONFIG.value, _WORKDIR.value)
  except (config_checks.ConfigError, reporting.NonFiniteMetricError) as e:
    # The message says it all; a traceback would bury it.
    sys.stderr.write(f"FATAL {type(e).__name__}: {e}\n")
    sys.exit(1)
  logging.info("Done: %s", metrics.get("summary", "") if isinstance(metrics, dict) else "")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
