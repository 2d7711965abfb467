"""Every study config is checked whole before any work starts (`check_config`).

A bad value used to surface late or never: ``segment_epochs=0`` as an IndexError, a sweep
rate of 1.5 as a table row, a bad ``mc_chunk_size`` only after training, ``mc_samples=0``
as all-NaN results. The generic rules go by the field's name (the top-level name, for the
fields of a nested ConfigDict and the items of a tuple):

- ``*rate`` / ``*rates`` (not ``learning_rate``): probabilities in [0, 1];
- ``*fraction`` / ``*fractions``: in [0, 1];
- counts (``*epochs``, ``*_size``, ``*samples``, ``*seeds``, ``*_steps``, ``hidden``, ...): positive
  integers; ``seed``, ``num_splits``, ``test_size``, ``train_size``, ``validation_size``,
  ``devices`` (0 has a meaning there): non-negative integers;
- scales (``learning_rate``, ``*length_scale``, ``temperature``, ``tau*``, ``*_eps``,
  ``max_norm``, ``*_alpha``): positive finite numbers; penalties (``l2``, ``weight_decay*``):
  non-negative finite numbers;
- ``mask_min_bits``: one of 1, 2, 4, 8;
- ``prng_impl``: a name in `dropjax.prng.IMPLS`.

Then the study's own ``check_config(config)`` (in ``experiments/<study>.py``) adds its rules
(choices among names, divisibility, ...). Every message names the field (``config.x``) and
the allowed values.
"""

from __future__ import annotations

import importlib
import itertools
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections
import numpy as np

from dropjax import masks, prng

# The studies `experiments.main` runs: module ``experiments.<name>`` with its ``STUDY``.
STUDIES = ("active_learning", "concrete_dropout", "concrete_mnist", "ensemble_interpretation",
           "finetuning", "mc_calibration", "regularizers", "uci", "uci_concrete",
           "variant_comparison")

_NON_NEGATIVE_INTS = ("seed", "split_seed", "num_splits", "test_size", "train_size",
                      "validation_size", "devices")
_COUNT_SUFFIXES = ("epochs", "_size", "sizes", "samples", "seeds", "repeats", "rounds", "hidden",
                   "channels", "features", "_units", "_bins", "_multiplier", "_per_class",
                   "_subset", "patience", "ks", "_match", "_steps", "_rank", "num_heads",
                   "num_blocks")
_SCALE_SUFFIXES = ("learning_rate", "length_scale", "temperature", "tau", "tau_values", "_eps",
                   "max_norm", "_alpha")
_PENALTIES = ("l2", "weight_decay", "weight_decay_c")


class ConfigError(ValueError):
  """A config field holds a value the study cannot use."""


def _is_int(v: Any) -> bool:
  return isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_)


def _is_number(v: Any) -> bool:
  return (isinstance(v, int | float | np.integer | np.floating)
          and not isinstance(v, bool | np.bool_) and math.isfinite(v))


def _rule(name: str) -> tuple[Callable[[Any], bool], str] | None:
  """``(test, allowed values)`` for a top-level field name; None for fields without one."""
  if name.endswith(_SCALE_SUFFIXES):
    return (lambda v: _is_number(v) and v > 0), "positive finite numbers"
  if name.endswith(("rate", "rates")) or name == "per_depth_first":
    return (lambda v: _is_number(v) and 0 <= v <= 1), "probabilities in [0, 1]"
  if name.endswith(("fraction", "fractions")) or name == "target_errors":
    return (lambda v: _is_number(v) and 0 <= v <= 1), "fractions in [0, 1]"
  if name in _NON_NEGATIVE_INTS:
    return (lambda v: _is_int(v) and v >= 0), "non-negative integers"
  if name.endswith(_COUNT_SUFFIXES):
    return (lambda v: _is_int(v) and v >= 1), "positive integers"
  if name == "mask_min_bits":
    return (lambda v: _is_int(v) and v in masks.AUTOMATIC_MIN_BITS), (
        f"one of {masks.AUTOMATIC_MIN_BITS}")
  if name == "prng_impl":
    return (lambda v: isinstance(v, str) and v in prng.IMPLS), (
        f"one of {sorted(prng.IMPLS)} (dropjax.prng)")
  if name == "angles":
    return _is_number, "finite numbers"
  if name in _PENALTIES:
    return (lambda v: _is_number(v) and v >= 0), "non-negative finite numbers"
  return None


def _leaves(value: Any, path: str):
  """``(path, leaf)`` of a field: ConfigDicts and dicts by key, tuples and lists by item."""
  if isinstance(value, ml_collections.ConfigDict | dict):
    for key in value.keys():
      yield from _leaves(value[key], f"{path}.{key}")
  elif isinstance(value, tuple | list):
    for item in value:
      yield from _leaves(item, path)
  else:
    yield path, value


def check_fields(config: ml_collections.ConfigDict) -> None:
  """Applies the generic rules (see the module docstring) to every field of ``config``.

  Args:
    config: a study config.

  Raises:
    ConfigError: naming the first bad field, its value and the allowed values.
  """
  for name in sorted(config.keys()):
    rule = _rule(name)
    if rule is None:
      continue
    test, allowed = rule
    value = config[name]
    for path, leaf in _leaves(value, f"config.{name}"):
      if not test(leaf):
        shown = value if path == f"config.{name}" else leaf
        raise ConfigError(f"{path} = {shown!r}: {leaf!r} is not allowed; {path} takes "
                          f"{allowed}.")


def check_config(config: ml_collections.ConfigDict,
                 studies: Sequence[str] = STUDIES) -> None:
  """Checks a study config whole: the study's name, the generic rules, the study's own.

  Args:
    config: the config ``experiments.main`` is about to run.
    studies: the study names allowed.

  Raises:
    ConfigError: naming the bad field and the allowed values.
  """
  study = config.get("study")
  if study not in studies:
    raise ConfigError(f"config.study must be one of {sorted(studies)}; got {study!r}.")
  check_fields(config)
  study_check = getattr(importlib.import_module(f"experiments.{study}.study"), "check_config", None)
  for check in (study_check, _EXTRA_CHECKS.get(study)):
    if check is None:
      continue
    try:
      check(config)
    except ConfigError:
      raise
    except ValueError as e:  # some studies' own checks raise plain ValueErrors
      raise ConfigError(str(e)) from e


def check_choice(config: ml_collections.ConfigDict, name: str, allowed: Sequence[Any]) -> None:
  """Refuses ``config.<name>`` (or any item of it, for a tuple) outside ``allowed``.

  Args:
    config: a study config.
    name: the field.
    allowed: the allowed values.
  """
  value = config[name]
  items = value if isinstance(value, tuple | list) else (value,)
  bad = [v for v in items if v not in allowed]
  if bad:
    raise ConfigError(f"config.{name} = {value!r}: {bad[0]!r} is not one of {list(allowed)}.")


def check_seed_count(config: ml_collections.ConfigDict, name: str = "num_seeds") -> None:
  """Refuses ``config.<name>`` below 2: a standard error over seeds needs two."""
  if not _is_int(config[name]) or config[name] < 2:
    raise ConfigError(f"config.{name} must be an integer >= 2 (a standard error needs two "
                      f"seeds); got {config[name]!r}.")


def check_increasing(config: ml_collections.ConfigDict, name: str) -> None:
  """Refuses an empty ``config.<name>`` or one that is not strictly increasing (sample
  counts read as running means; positivity is `check_fields`' rule)."""
  values = tuple(config[name])
  if not values or any(b <= a for a, b in itertools.pairwise(values)):
    raise ConfigError(f"config.{name} must be strictly increasing sample counts; got "
                      f"{values}.")


def check_initial_rate(config: ml_collections.ConfigDict) -> None:
  """``config.init_rate`` of a learned (Concrete) rate lies strictly in (0, 1): its logit
  is what trains, and 0 or 1 have none."""
  if not 0 < config.init_rate < 1:
    raise ConfigError(
        f"config.init_rate = {config.init_rate}: a learned rate starts in (0, 1) (its logit "
        "is trained).")


def check_dataset(config: ml_collections.ConfigDict) -> None:
  """``config.dataset`` is one of the classification datasets (`experiments.datasets`)."""
  from experiments.datasets import DATASETS

  check_choice(config, "dataset", DATASETS)


def check_variant_comparison(config: ml_collections.ConfigDict) -> None:
  """The variant comparison's rules beyond its own `check_config` (which tunes)."""
  check_dataset(config)
  from experiments.variant_comparison.config import VARIANTS

  check_choice(config, "variants", VARIANTS)
  for name in ("sweep_train_fractions",):
    if any(f <= 0 for f in config[name]):
      raise ConfigError(f"config.{name} = {config[name]!r}: every fraction must be in (0, 1] "
                        "(0 trains on no data).")
  for name in ("conv_rate", "dense_rate"):
    missing = [v for v in config.variants if v not in config[name]]
    if missing:
      raise ConfigError(f"config.{name} has no rate for the variants {missing}; its keys: "
                        f"{sorted(config[name].keys())}.")


# Rules kept here for studies whose own check_config covers only part of their config.
_EXTRA_CHECKS = {"variant_comparison": check_variant_comparison}

_OVERRIDE = re.compile(r"^--?config\.([^=]+)(=|$)")


def config_file_argument(argv: Sequence[str]) -> str | None:
  """The value of ``--config=FILE[:ARG]`` (or ``--config FILE``) in ``argv``, if any."""
  for i, arg in enumerate(argv):
    match = re.match(r"^--?config(=(.*))?$", arg)
    if match:
      if match.group(1):
        return match.group(2)
      return argv[i + 1] if i + 1 < len(argv) else None
  return None


def load_config_file(argument: str) -> ml_collections.ConfigDict:
  """The config of ``FILE[:ARG]``: ``get_config(ARG)`` of the Python file ``FILE``."""
  import importlib.util

  path, _, arg = argument.partition(":")
  spec = importlib.util.spec_from_file_location("_dropjax_config", path)
  if spec is None or spec.loader is None:
    raise ConfigError(f"--config={argument}: {path} is not a Python config file.")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def check_overrides(argv: Sequence[str], config: ml_collections.ConfigDict | None = None) -> None:
  """Refuses ``--config.FIELD=...`` for a field the config does not have, listing the valid ones.

  ml_collections reports an unknown field as a bare ``AttributeError: 'foo'``.

  Args:
    argv: the command line.
    config: the config the overrides apply to; None loads the ``--config`` file of ``argv``.

  Raises:
    ConfigError: ``unknown config field 'foo' (--config.foo); valid fields: ...``.
  """
  overrides = [m.group(1) for m in map(_OVERRIDE.match, argv) if m]
  if not overrides:
    return
  if config is None:
    argument = config_file_argument(argv)
    if argument is None:
      return  # absl reports the missing --config itself
    config = load_config_file(argument)
  for field in overrides:
    node, walked = config, "config"
    for part in field.split("."):
      if not isinstance(node, ml_collections.ConfigDict):
        raise ConfigError(f"unknown config field {field!r} (--config.{field}): {walked} is a "
                          f"{type(node).__name__}, not a nested config.")
      if part not in node:
        raise ConfigError(
            f"unknown config field {part!r} (--config.{field}); valid fields of {walked}: "
            f"{', '.join(sorted(node.keys()))}.")
      node, walked = node[part], f"{walked}.{part}"
