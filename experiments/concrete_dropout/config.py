"""Concrete dropout on the reference synthetic task: learned rates against the data size.

Reproduces Gal, Hron & Kendall 2017 (NeurIPS), section 4.1, as run in the reference
notebook (yaringal/ConcreteDropout, concrete-dropout-keras.ipynb): y = 2x + 8 + N(0, 1),
x ~ N(0, 1); an MLP with 3 hidden ReLU layers of 1024 units and heteroscedastic mean and
log-variance heads, a ConcreteDropout layer before each of the 5 dense layers; length-scale
l = 1e-4, weight_regularizer = l^2 / N, dropout_regularizer = 2 / N, Adam, batch 20,
N in {10, 25, 50, 100, 1000, 10000} with {2000, 1000, 500, 200, 20, 2} epochs, 3 repeats.

  python -m experiments.main --config=experiments/concrete_dropout/config.py \
      --workdir=runs/concrete_synthetic
CPU smoke run: --config=experiments/concrete_dropout/config.py:quick
"""

import ml_collections

from experiments import config_base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = config_base.study_config("concrete_dropout", arg, ("quick",), data=False)
  config.sizes = (10, 25, 50, 100, 1000, 10000)
  config.epochs = (2000, 1000, 500, 200, 20, 2)
  config.repeats = 3
  config.hidden = 1024
  config.length_scale = 1e-4
  config.batch_size = 20
  config.learning_rate = 1e-3
  config.init_rate = 0.1
  config.temperature = 0.1
  config.validation_size = 1000
  config.mc_samples = 20
  # Published: the notebook's converged p for [layer 1 (input), 2, 3, mean head], keyed by N.
  config.published_rates = ml_collections.ConfigDict({
      "10": (0.077, 0.404, 0.404, 0.403), "25": (0.069, 0.404, 0.403, 0.403),
      "50": (0.071, 0.326, 0.325, 0.325), "100": (0.079, 0.236, 0.236, 0.236),
      "1000": (0.075, 0.231, 0.225, 0.224), "10000": (0.079, 0.137, 0.127, 0.112),
  })
  if arg == "quick":
    config.sizes = (10, 100)
    config.epochs = (20, 4)
    config.repeats = 1
    config.hidden = 32
    config.validation_size = 100
    config.mc_samples = 4
  return config
