"""Concrete dropout on an MNIST MLP: learned per-layer rates vs a hand-set fixed rate.

Gal, Hron & Kendall (NeurIPS 2017) report that concrete dropout matches hand-tuned
dropout without a search (their MNIST experiments: figures only). Here an MLP with concrete
dropout at every position (init p = 0.1, weight regulariser l^2/N with l = 0.1, dropout
regulariser 1/N for the cross-entropy) against the same MLP with Srivastava et al.'s fixed
rates (input 0.2, hidden 0.5), same initialisation and budget.

MNIST:
  python -m experiments.main --config=experiments/concrete_mnist/config.py:mnist \
      --workdir=runs/concrete_mnist --config.data_dir=../shared/data
Embedded digits: --config=experiments/concrete_mnist/config.py
CPU smoke run: --config=experiments/concrete_mnist/config.py:quick
"""

import ml_collections

from experiments import config_base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = config_base.study_config("concrete_mnist", arg, ("mnist", "quick"))
  config.dataset = "digits"
  config.validation_size = 5000
  config.hidden = (512, 512)
  config.init_rate = 0.1
  config.fixed_rates = (0.2, 0.5)
  config.length_scale = 0.1
  config.epochs = 60
  config.batch_size = 64
  config.learning_rate = 1e-3
  config.mc_samples = 50
  config.mc_chunk_size = 25
  config.ece_bins = 15
  if arg == "mnist":
    config.dataset = "mnist"
    config.epochs = 20
    config.batch_size = 128
  elif arg == "quick":
    config.hidden = (16,)
    config.epochs = 2
    config.mc_samples = 4
    config.mc_chunk_size = 2
  return config
