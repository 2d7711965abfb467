"""The embedded default dataset: scikit-learn's 8x8 handwritten digits (UCI optdigits test set).

1,797 images of 10 classes that ship inside scikit-learn as a gzip CSV, so the main job runs
on a fresh machine with no download and no data dir.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from dropjax._extras import require


class Split(NamedTuple):
  images: np.ndarray  # (N, 8, 8, 1) float32 in [0, 1]
  labels: np.ndarray  # (N,) int32


class SplitDataset(NamedTuple):
  train: Split
  validation: Split
  test: Split
  num_classes: int


def load_digits(
    seed: int = 0, validation_fraction: float = 0.15, test_fraction: float = 0.25
) -> SplitDataset:
  """Stratified train/validation/test split of the digits, fixed by ``seed``.

  Args:
    seed: the seed of the split (numpy's PCG64, independent of the model's keys).
    validation_fraction: fraction of each class held out for validation.
    test_fraction: fraction of each class held out for testing.

  Returns:
    A `SplitDataset` of NHWC float32 images scaled to [0, 1] and int32 labels.

  Example:
    >>> from dropjax.data import load_digits
    >>> data = load_digits()
    >>> data.train.images.shape[1:], data.num_classes
    ((8, 8, 1), 10)
  """
  sklearn_datasets = require("sklearn.datasets", "load_digits (the embedded digits)")

  for name, frac in (("validation_fraction", validation_fraction),
                     ("test_fraction", test_fraction)):
    if not 0 <= frac < 1:
      raise ValueError(f"`{name}` must be in [0, 1); got {frac}.")
  if validation_fraction + test_fraction >= 1:
    raise ValueError("`validation_fraction + test_fraction` must be below 1.")
  digits = sklearn_datasets.load_digits()
  images = (digits.images / 16.0).astype(np.float32)[..., None]
  labels = digits.target.astype(np.int32)
  rng = np.random.default_rng(seed)
  parts: dict[str, list[np.ndarray]] = {"train": [], "validation": [], "test": []}
  for c in range(10):
    idx = rng.permutation(np.flatnonzero(labels == c))
    n_test = round(test_fraction * len(idx))
    n_val = round(validation_fraction * len(idx))
    parts["test"].append(idx[:n_test])
    parts["validation"].append(idx[n_test : n_test + n_val])
    parts["train"].append(idx[n_test + n_val :])
  splits = {}
  for name, chunks in parts.items():
    idx = rng.permutation(np.concatenate(chunks))
    splits[name] = Split(images[idx], labels[idx])
  return SplitDataset(splits["train"], splits["validation"], splits["test"], num_classes=10)
