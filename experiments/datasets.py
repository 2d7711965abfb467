"""The classification data every image study chooses from: the embedded digits or MNIST."""

from __future__ import annotations

import ml_collections

from dropjax.data import Split, SplitDataset, load_digits
from dropjax.data.idx import load_idx_dataset

DATASETS = ("digits", "mnist")


def load_classification(dataset: str, data_dir: str = "", *, validation_size: int = 0,
                        split_seed: int = 0) -> SplitDataset:
  """Train/validation/test splits of ``dataset``.

  Args:
    dataset: ``"digits"``, the embedded default (a stratified split fixed by
      ``split_seed``), or ``"mnist"``, read from ``data_dir`` (or ``DROPJAX_DATA_DIR``).
    data_dir: the data dir holding ``mnist/``; empty means ``DROPJAX_DATA_DIR``.
    validation_size: MNIST only: the last ``validation_size`` training images become the
      validation split (0 leaves it empty). The digits' split has its own validation part.
    split_seed: digits only: the seed of the stratified split.

  Returns:
    A ``SplitDataset`` of NHWC float32 images in [0, 1] and int32 labels.
  """
  if dataset == "digits":
    return load_digits(seed=split_seed)
  if dataset == "mnist":
    data = load_idx_dataset("mnist", data_dir or None)
    train = data["train"]
    if not 0 <= validation_size < len(train.labels):
      raise ValueError(f"validation_size must be in [0, {len(train.labels)}) for MNIST; "
                       f"got {validation_size}.")
    cut = len(train.labels) - validation_size
    return SplitDataset(Split(train.images[:cut], train.labels[:cut]),
                        Split(train.images[cut:], train.labels[cut:]), data["test"], 10)
  raise ValueError(f"dataset must be one of {DATASETS}; got {dataset!r}.")


def load_splits(config: ml_collections.ConfigDict) -> tuple[Split, Split, Split]:
  """``(train, validation, test)`` of ``config.dataset`` from ``config.data_dir``; MNIST
  holds out its last ``config.validation_size`` training images."""
  data = load_classification(config.dataset, config.data_dir,
                             validation_size=config.validation_size)
  return data.train, data.validation, data.test
