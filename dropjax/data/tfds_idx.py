"""A TFDS builder for idx image datasets built offline from local raw files.

Without TensorFlow, TFDS can build a `GeneratorBasedBuilder` with ``Tensor``/``ClassLabel``
features in the ``array_record`` format and read it back through ``as_data_source`` (random
access, the JAX data path). The stock MNIST builder needs TensorFlow and the original gzip
bytes; this one reads the raw files through `dropjax.data.idx`, which checks the MD5 of the
decompressed content.

Example:
  >>> from dropjax.data.tfds_idx import idx_data_source
  >>> source = idx_data_source("mnist", "train", data_dir="../shared/data",
  ...                          tfds_dir="/tmp/tfds")  # doctest: +SKIP
  >>> source[0]["image"].shape  # doctest: +SKIP
  (28, 28, 1)
"""

from __future__ import annotations

import os
from typing import ClassVar

import numpy as np

from dropjax._extras import require
from dropjax.data.idx import IDX_DATASETS, read_idx
from dropjax.data.paths import resolve_data_dir

tfds = require("tensorflow_datasets", "dropjax.data.tfds_idx")


def default_tfds_dir() -> str:
  return os.environ.get("TFDS_DATA_DIR", os.path.join(os.path.expanduser("~"),
                                                      "tensorflow_datasets"))


class IdxImages(tfds.core.GeneratorBasedBuilder):
  """Builds ``dropjax_<name>`` (e.g. ``dropjax_mnist``) from local idx files."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Built from local idx files checked by MD5."}

  def __init__(self, *, dataset: str, raw_dir: str, **kwargs):
    if dataset not in IDX_DATASETS:
      raise ValueError(f"Unknown idx dataset {dataset!r}; allowed: {sorted(IDX_DATASETS)}.")
    self._dataset = dataset
    self._raw_dir = raw_dir
    self.name = f"dropjax_{dataset}"
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("image", "label"),
        # Keep file order: record i of the source is example i of the raw files.
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing is downloaded
    return {split: self._generate_examples(split) for split in ("train", "test")}

  def _generate_examples(self, split):
    files = IDX_DATASETS[self._dataset]
    images = read_idx(self._raw_dir, *getattr(files, f"{split}_images"), files.how_to_get)
    labels = read_idx(self._raw_dir, *getattr(files, f"{split}_labels"), files.how_to_get)
    for i in range(images.shape[0]):
      yield i, {"image": images[i][..., None], "label": int(labels[i])}


def idx_builder(dataset: str = "mnist", *, data_dir: str | None = None,
                tfds_dir: str | None = None) -> IdxImages:
  """The builder, prepared (built once, then reused) under ``tfds_dir``."""
  raw_dir = os.path.join(resolve_data_dir(data_dir, dataset), dataset)
  builder = IdxImages(dataset=dataset, raw_dir=raw_dir, data_dir=tfds_dir or default_tfds_dir(),
                      file_format="array_record")
  builder.download_and_prepare()
  return builder


def idx_data_source(dataset: str, split: str, *, data_dir: str | None = None,
                    tfds_dir: str | None = None):
  """A random-access TFDS data source over one split (``"train"`` or ``"test"``)."""
  return idx_builder(dataset, data_dir=data_dir, tfds_dir=tfds_dir).as_data_source(split=split)
