"""Where real data lives: an explicit ``data_dir`` or the ``DROPJAX_DATA_DIR`` variable."""

from __future__ import annotations

import os

DATA_DIR_ENV = "DROPJAX_DATA_DIR"


class DataNotFoundError(FileNotFoundError):
  """Raised with where we looked and how to obtain the data."""


def resolve_data_dir(data_dir: str | os.PathLike | None, dataset: str) -> str:
  """``data_dir`` if given, else ``$DROPJAX_DATA_DIR``; an error says how to set either."""
  if data_dir is None or str(data_dir) == "":
    data_dir = os.environ.get(DATA_DIR_ENV, "")
  if not data_dir:
    raise DataNotFoundError(
        f"No data directory for {dataset}: pass data_dir=... (--data_dir on the command line) "
        f"or set {DATA_DIR_ENV}. In this project's environment the data is in ../shared/data."
    )
  return os.fspath(data_dir)
