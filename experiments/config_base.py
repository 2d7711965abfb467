"""What every study config shares: its study name, the seed, the data dir and its options.

Each ``experiments/<study>/config.py`` starts from `study_config`, which refuses an unknown
option before any field is set, then sets its own fields and applies its options.
"""

from __future__ import annotations

from collections.abc import Sequence

import ml_collections


def study_config(study: str, option: str | None, options: Sequence[str], *,
                 data: bool = True) -> ml_collections.ConfigDict:
  """A config holding ``study``, ``seed`` (0), ``mask_min_bits`` (8), ``prng_impl``
  ("threefry2x32") and, for studies that read data, ``data_dir``.

  Args:
    study: the registered study's name (``config.study``).
    option: the ``:option`` of ``--config=FILE:option``; None or "" for the default.
    options: the options the study's config accepts.
    data: whether the study reads a dataset (``data_dir``: "" means
      ``$DROPJAX_DATA_DIR``); the synthetic studies do not.

  Returns:
    The config to which the study adds its own fields.

  Raises:
    ValueError: for an option not in ``options``, naming them.
  """
  if option not in (None, "", *options):
    raise ValueError(f"Unknown config option {option!r} for the {study} study; options: "
                     f"{', '.join(repr(o) for o in options)}.")
  config = ml_collections.ConfigDict()
  config.study = study
  config.seed = 0
  # The narrowest lane the automatic mask width may use (`dropjax.masks.automatic_min_bits`).
  # 8 pins the masks of the committed results, drawn before 1-, 2- and 4-bit lanes; 1 draws
  # rate 0.5 from one random bit per element (faster; other masks, so a new workdir).
  config.mask_min_bits = 8
  # The generator of every key the study makes (`dropjax.prng.key`): "threefry2x32", JAX's
  # default, or "keyed_hash", the same keys with bits from a keyed hash (several times
  # cheaper masks on CPU; other masks, so a new workdir). The uci study defaults to
  # "keyed_hash"; every other study, and every other committed result, to threefry.
  config.prng_impl = "threefry2x32"
  if data:
    config.data_dir = ""
  return config
