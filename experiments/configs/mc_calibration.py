"""MC-dropout calibration against temperature scaling and deep ensembles, clean and shifted.

Follows Ovadia et al. 2019 (NeurIPS), "Can you trust your model's uncertainty?", MNIST
setup (google-research/uq_benchmark_2019): an MLP with 2 hidden layers of 200 units; methods
vanilla, temperature scaling (T fitted on held-out data), MC dropout, and a deep ensemble
of 5; the test set rotated from 0 to 180 degrees; accuracy, NLL, Brier and ECE (15 bins).
Published (figures only, no table): under shift ensembles are best, and MC dropout beats
temperature scaling, whose calibration degrades. Plus OOD detection: train on digits 0-4,
score 5-9 by predictive entropy and by mutual information (AUROC).

MNIST:
  python -m experiments.main --config=experiments/configs/mc_calibration.py:mnist \
      --workdir=runs/calibration_mnist --config.data_dir=../shared/data
LeNet-5 on MNIST: --config=experiments/configs/mc_calibration.py:mnist_lenet
Embedded digits: --config=experiments/configs/mc_calibration.py
CPU smoke run: --config=experiments/configs/mc_calibration.py:quick
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.study = "mc_calibration"
  config.seed = 0
  config.dataset = "digits"
  config.data_dir = ""
  # "mlp" (hidden sizes below) or "lenet" (LeNet-5, dropout before each dense layer).
  config.model = "mlp"
  config.hidden = (200, 200)
  # Ovadia et al.'s tuned MLP dropout rate was 0.121; we use it on the hidden layers.
  config.dropout_rate = 0.121
  config.epochs = 60
  config.batch_size = 64
  config.learning_rate = 1e-3
  config.mc_samples = (1, 10, 30, 100)
  config.mc_chunk_size = 25
  config.ensemble_size = 5
  config.angles = (0, 15, 30, 45, 60, 75, 90, 105, 120, 135, 150, 165, 180)
  config.ece_bins = 15
  # MNIST has no validation split: the last examples of train hold out for temperature.
  config.validation_size = 5000
  if arg in ("mnist", "mnist_lenet"):
    config.dataset = "mnist"
    config.epochs = 20
    config.batch_size = 128
  if arg == "mnist_lenet":
    config.model = "lenet"
    # Ovadia et al.'s tuned LeNet dropout rate.
    config.dropout_rate = 0.303
  elif arg == "quick":
    config.hidden = (16,)
    config.epochs = 2
    config.mc_samples = (1, 4)
    config.mc_chunk_size = 2
    config.ensemble_size = 2
    config.angles = (0, 90)
  elif arg not in (None, "", "mnist", "mnist_lenet"):
    raise ValueError(f"Unknown config option {arg!r}; options: 'mnist', 'mnist_lenet', "
                     "'quick'.")
  return config
