"""Where real data lives: an explicit ``data_dir`` or the ``DROPJAX_DATA_DIR`` variable."""

from __future__ import annotations

import os

DATA_DIR_ENV = "DROPJAX_DATA_DIR"


class DataNotFoundError(FileNotFoundError):
  """Raised with where we looked and how to obtain the data."""


class ChecksumError(ValueError):
  """A data file's content does not match its expected checksum."""


def resolve_data_dir(data_dir: str | os.PathLike | None, dataset: str) -> str:
  """``data_dir`` if given, else ``$DROPJAX_DATA_DIR``; an error says how to set either.

  Args:
    data_dir: an explicit data root (``--config.data_dir``); None or empty for the variable.
    dataset: the dataset's name, for the error message.

  Returns:
    The data root.
  """
  if data_dir is None or str(data_dir) == "":
    data_dir = os.environ.get(DATA_DIR_ENV, "")
  if not data_dir:
    raise DataNotFoundError(
        f"No data directory for {dataset}: pass data_dir=... (--config.data_dir on the command "
        f"line) or set {DATA_DIR_ENV}. In this project's environment the data is in "
        "../shared/data."
    )
  return os.fspath(data_dir)


def describe_data_dir(data_dir: str | os.PathLike | None) -> str:
  """Where the data root came from, for error messages: the argument or the variable.

  Args:
    data_dir: what the caller passed (None or empty means ``$DROPJAX_DATA_DIR``).

  Returns:
    E.g. ``"the data dir /data comes from $DROPJAX_DATA_DIR (or pass ...)"``.
  """
  if data_dir is None or str(data_dir) == "":
    value = os.environ.get(DATA_DIR_ENV, "")
    shown = os.path.abspath(value) if value else "(unset)"
    return (f"the data dir {shown} comes from ${DATA_DIR_ENV} (or pass data_dir=... / "
            "--config.data_dir)")
  return (f"the data dir {os.path.abspath(os.fspath(data_dir))} comes from data_dir=... / "
          "--config.data_dir")
