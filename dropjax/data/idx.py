"""MNIST-format (idx) image datasets read from local raw files, checked by MD5.

The idx format (LeCun et al.) is a big-endian header ``0x0000 <type> <ndim>``, ``ndim``
uint32 sizes, then the data. MNIST, Fashion-MNIST and KMNIST share it. Files may be
gzipped; the checksum is of the *decompressed* bytes (gzip bytes differ between copies).
"""

from __future__ import annotations

import gzip
import hashlib
import os
from typing import NamedTuple

import numpy as np

from dropjax.data.digits import Split
from dropjax.data.paths import (
    ChecksumError,
    DataNotFoundError,
    describe_data_dir,
    resolve_data_dir,
)

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class IdxFiles(NamedTuple):
  """File names (without .gz) and MD5s of the decompressed files of one idx dataset."""

  train_images: tuple[str, str]
  train_labels: tuple[str, str]
  test_images: tuple[str, str]
  test_labels: tuple[str, str]
  how_to_get: str


MNIST = IdxFiles(
    train_images=("train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb"),
    train_labels=("train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624"),
    test_images=("t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea"),
    test_labels=("t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637"),
    how_to_get=(
        "Place the four MNIST idx files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz; gzipped or not) in "
        "<data_dir>/mnist/, e.g. from the copy in ../shared/data/mnist."
    ),
)
IDX_DATASETS = {"mnist": MNIST}


def read_idx_bytes(folder: str, name: str, how_to_get: str) -> tuple[bytes, str]:
  """The decompressed bytes of ``folder/name`` or ``folder/name.gz``, and the path read."""
  candidates = [os.path.join(folder, name), os.path.join(folder, name + ".gz")]
  for path in candidates:
    if os.path.exists(path):
      try:
        if path.endswith(".gz"):
          with gzip.open(path, "rb") as f:
            return f.read(), path
        with open(path, "rb") as f:
          return f.read(), path
      except (OSError, EOFError) as e:
        raise ChecksumError(f"{path} is corrupt (cannot be decompressed: {e}). {how_to_get}") from e
  raise DataNotFoundError(
      f"Looked for {' and '.join(os.path.abspath(c) for c in candidates)}: not found. {how_to_get}"
  )


def parse_idx(raw: bytes, path: str = "<bytes>") -> np.ndarray:
  """Parses idx bytes into an array, checking the header against the payload size."""
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
    raise ValueError(f"{path} is not an idx file (bad magic number {raw[:4].hex()}).")
  dtype, ndim = np.dtype(_IDX_TYPES[raw[2]]), raw[3]
  header = 4 + 4 * ndim
  shape = tuple(int(d) for d in np.frombuffer(raw[4:header], ">u4"))
  expected = int(np.prod(shape)) * dtype.itemsize
  if len(raw) - header != expected:
    raise ValueError(
        f"{path} is corrupt: its header promises shape {shape} ({expected} bytes) but "
        f"{len(raw) - header} bytes follow."
    )
  return np.frombuffer(raw, dtype, offset=header).reshape(shape)


def read_idx(folder: str, name: str, md5: str | None, how_to_get: str) -> np.ndarray:
  """Reads and checks one idx file (``name`` or ``name.gz`` in ``folder``)."""
  raw, path = read_idx_bytes(folder, name, how_to_get)
  if md5 is not None:
    digest = hashlib.md5(raw).hexdigest()
    if digest != md5:
      raise ChecksumError(
          f"{path} is corrupt: the MD5 of its decompressed content is {digest}, expected {md5}. "
          f"{how_to_get}"
      )
  return parse_idx(raw, path)


def _dataset_folder(name: str, data_dir: str | None) -> str:
  folder = os.path.join(resolve_data_dir(data_dir, name), name)
  if not os.path.isdir(folder):
    raise DataNotFoundError(
        f"{name}: looked for the folder {os.path.abspath(folder)}: not found; "
        f"{describe_data_dir(data_dir)}. {IDX_DATASETS[name].how_to_get}"
    )
  return folder


def idx_sha256(name: str = "mnist", data_dir: str | None = None) -> dict[str, str]:
  """SHA-256 of the decompressed content of each file of an idx dataset (the run's data
  fingerprint: gzip bytes differ between copies of the same data).

  Args:
    name: a key of `IDX_DATASETS`.
    data_dir: the data root holding ``<name>/``; default ``$DROPJAX_DATA_DIR``.

  Returns:
    ``{"<name>/<file>": hex digest}`` for the four files.
  """
  if name not in IDX_DATASETS:
    raise ValueError(f"Unknown idx dataset {name!r}; allowed: {sorted(IDX_DATASETS)}.")
  files = IDX_DATASETS[name]
  folder = _dataset_folder(name, data_dir)
  out = {}
  for field in ("train_images", "train_labels", "test_images", "test_labels"):
    file = getattr(files, field)[0]
    raw, _ = read_idx_bytes(folder, file, files.how_to_get)
    out[f"{name}/{file}"] = hashlib.sha256(raw).hexdigest()
  return out


def load_idx_dataset(name: str = "mnist", data_dir: str | None = None) -> dict[str, Split]:
  """Train and test splits of an idx image dataset as NHWC float32 in [0, 1].

  Args:
    name: a key of `IDX_DATASETS`.
    data_dir: the data root holding ``<name>/``; default ``$DROPJAX_DATA_DIR``.

  Returns:
    ``{"train": Split, "test": Split}``.
  """
  if name not in IDX_DATASETS:
    raise ValueError(f"Unknown idx dataset {name!r}; allowed: {sorted(IDX_DATASETS)}.")
  files = IDX_DATASETS[name]
  folder = _dataset_folder(name, data_dir)
  out = {}
  for split in ("train", "test"):
    images = read_idx(folder, *getattr(files, f"{split}_images"), files.how_to_get)
    labels = read_idx(folder, *getattr(files, f"{split}_labels"), files.how_to_get)
    if images.shape[0] != labels.shape[0]:
      raise ValueError(f"{folder}: {split} has {images.shape[0]} images but "
                       f"{labels.shape[0]} labels.")
    out[split] = Split((images.astype(np.float32) / 255.0)[..., None], labels.astype(np.int32))
  return out
