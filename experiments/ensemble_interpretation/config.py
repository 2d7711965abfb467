"""Dropout as an implicit ensemble: MC averaging vs weight scaling, and exact sub-network means.

Reproduces Srivastava et al. 2014 (JMLR), section 7.5, Figure 11: test error of
Monte-Carlo model averaging over k sampled sub-networks against weight scaling, for an MLP
trained with dropout (keep 0.8 on the input, 0.5 on the hidden layers) and max-norm.
Published: MC averaging reaches weight scaling at about k = 50 (read off the figure);
beyond, MC is slightly better but within one standard deviation. Ours: MC(k) - WS paired by
seed (and, per seed, by test image), mean ± s.e. over 5 seeds, k up to 1,000. Plus an
exact check on nets small enough to enumerate every sub-network: weight scaling equals the
normalised geometric mean for a single softmax layer, and only approximates it when dropout
precedes a nonlinearity.

MNIST (the paper's setting; needs the data dir):
  python -m experiments.main --config=experiments/ensemble_interpretation/config.py:mnist \
      --workdir=runs/ensemble_mnist --config.data_dir=../shared/data
Embedded digits (no data dir):
  python -m experiments.main --config=experiments/ensemble_interpretation/config.py \
      --workdir=runs/ensemble_digits
CPU smoke run: --config=experiments/ensemble_interpretation/config.py:quick
"""

import ml_collections

from experiments import config_base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = config_base.study_config("ensemble_interpretation", arg, ("mnist", "quick"))
  config.dataset = "digits"
  config.hidden = (256, 256)
  config.input_rate = 0.2
  config.hidden_rate = 0.5
  config.epochs = 60
  config.batch_size = 64
  config.learning_rate = 1e-3
  # Srivastava et al. train with max-norm (App. B.1); c = 3 as in the regularizers study
  # (a large c, e.g. 1e9, never binds).
  config.max_norm = 3.0
  # Seed i trains from fold_in(key(seed), i); MC(k) - WS is paired by seed and by image.
  config.num_seeds = 5
  # Running means of one stream of max(ks) samples per seed (dropjax.mc.mc_running_means).
  config.ks = (1, 2, 3, 5, 10, 20, 30, 50, 75, 100, 200, 500, 1000)
  config.mc_chunk_size = 25
  # Exact enumeration: 2**units sub-networks.
  config.exact_units = 12
  config.exact_rates = (0.2, 0.5)
  config.exact_epochs = 60
  # Published (Srivastava et al. 2014, Fig. 11, read off the plot): MC matches WS at k ~ 50.
  config.published_k_match = 50
  if arg == "mnist":
    # Sized to about an hour on a 2-core CPU: 5 seeds x (30 epochs on 60,000 images, then
    # 1,000 MC passes over the 10,000 test images, which dominate).
    config.dataset = "mnist"
    config.hidden = (512, 512)
    config.epochs = 30
    config.batch_size = 128
    config.exact_epochs = 5
  elif arg == "quick":
    config.hidden = (32,)
    config.epochs = 2
    config.num_seeds = 2
    config.ks = (1, 2, 4)
    config.mc_chunk_size = 2
    config.exact_units = 6
    config.exact_epochs = 2
  return config
