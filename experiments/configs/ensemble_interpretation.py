"""Dropout as an implicit ensemble: MC averaging vs weight scaling, and exact sub-network means.

Reproduces Srivastava et al. 2014 (JMLR), section 7.5, Figure 11: test error of
Monte-Carlo model averaging over k sampled sub-networks against weight scaling, for an MLP
trained with dropout (keep 0.8 on the input, 0.5 on the hidden layers). Published: MC
averaging reaches weight scaling at about k = 50 (read off the figure); beyond, MC is
slightly better but within one standard deviation. Plus an exact check on nets small
enough to enumerate every sub-network: weight scaling equals the normalised geometric mean
for a single softmax layer, and only approximates it when dropout precedes a nonlinearity.

MNIST (the paper's setting; needs the data dir):
  python -m experiments.main --config=experiments/configs/ensemble_interpretation.py:mnist \
      --workdir=runs/ensemble_mnist --config.data_dir=../shared/data
Embedded digits (no data dir):
  python -m experiments.main --config=experiments/configs/ensemble_interpretation.py \
      --workdir=runs/ensemble_digits
CPU smoke run: --config=experiments/configs/ensemble_interpretation.py:quick
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.study = "ensemble_interpretation"
  config.seed = 0
  config.dataset = "digits"
  config.data_dir = ""
  config.hidden = (256, 256)
  config.input_rate = 0.2
  config.hidden_rate = 0.5
  config.epochs = 60
  config.batch_size = 64
  config.learning_rate = 1e-3
  # Models trained in one vmapped program; the band is over these and the MC repeats.
  config.num_train_seeds = 3
  config.mc_repeats = 5
  config.ks = (1, 2, 3, 5, 10, 20, 30, 50, 75, 100)
  config.mc_chunk_size = 25
  # Exact enumeration: 2**units sub-networks.
  config.exact_units = 12
  config.exact_rates = (0.2, 0.5)
  config.exact_epochs = 60
  # Published (Srivastava et al. 2014, Fig. 11, read off the plot): MC matches WS at k ~ 50.
  config.published_k_match = 50
  if arg == "mnist":
    # Sized for a 2-core CPU (about 8 minutes): 100 MC passes over the 10,000 test images
    # per model and repeat dominate the cost.
    config.dataset = "mnist"
    config.hidden = (512, 512)
    config.epochs = 10
    config.batch_size = 128
    config.num_train_seeds = 2
    config.mc_repeats = 3
    config.exact_epochs = 5
  elif arg == "quick":
    config.hidden = (32,)
    config.epochs = 2
    config.num_train_seeds = 2
    config.mc_repeats = 2
    config.ks = (1, 2, 4)
    config.mc_chunk_size = 2
    config.exact_units = 6
    config.exact_epochs = 2
  elif arg not in (None, ""):
    raise ValueError(f"Unknown config option {arg!r}; options: 'mnist', 'quick'.")
  return config
