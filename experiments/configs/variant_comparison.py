"""Variant comparison on the embedded handwritten digits: the README's main job.

The same residual CNN and training budget for every dropout variant; test accuracy, NLL,
Brier score and ECE (15 bins) with deterministic (weight-scaling) and MC-dropout inference,
plus training time per step and its overhead over no dropout. Each fixed-rate variant is
tuned: trained at tune_scales x its rates, the lowest validation tune_metric kept.

Command (full, about 8 minutes on a 2-core CPU):
  python -m experiments.main --config=experiments/configs/variant_comparison.py \
      --workdir=runs/variant_comparison
CPU smoke run (seconds):
  python -m experiments.main --config=experiments/configs/variant_comparison.py:quick \
      --workdir=/tmp/vc_quick
Any field can be overridden, e.g. --config.seed=1 --config.epochs=50.
The same study on MNIST (GPU-sized for all variants; --config.train_size=N for a subset):
  python -m experiments.main --config=experiments/configs/variant_comparison.py:mnist \
      --workdir=runs/variant_comparison_mnist --config.data_dir=../shared/data

There is no published table for this dataset; the published numbers the variants are held
against (MNIST, ImageNet) live with the studies that reproduce them.
"""

import ml_collections

from dropjax import variants as variants_lib

# Every variant of the registry that plugs into the models (`dropjax.variants`), in its
# order, when this module was imported; `get_config` reads the registry again, so a variant
# registered (with dense and conv rates) before it is called joins the comparison.
VARIANTS = variants_lib.model_variants()


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.study = "variant_comparison"
  config.seed = 0
  config.split_seed = 0
  config.dataset = "digits"
  # MNIST only: the data dir ("" = $DROPJAX_DATA_DIR) and the held-out tail of the
  # training set. Either dataset: how many training images to use (0 = all).
  config.data_dir = ""
  config.validation_size = 5000
  config.train_size = 0
  names = variants_lib.model_variants()
  config.variants = names
  # Rate per position, the centre of each variant's tuning grid: before the convolutions
  # of stages 2+ (for drop_path: the last block's rate, linear in depth) and before each
  # dense layer. Concrete dropout starts here and learns its own. The registry's defaults:
  # none 0/0, dropout, spatial, dropblock and gaussian 0.1/0.5, alpha 0.05/0.1,
  # dropconnect 0/0.5, concrete 0.1/0.1, drop_path 0.2/0 (conv/dense).
  config.conv_rate = ml_collections.ConfigDict(
      {name: variants_lib.get(name).conv_rate for name in names})
  config.dense_rate = ml_collections.ConfigDict(
      {name: variants_lib.get(name).dense_rate for name in names})
  config.channels = (32, 64)
  config.dense_features = 128
  config.block_size = 3
  # Each fixed-rate variant trains at these multiples of its rates above; the lowest
  # validation tune_metric (one of variant_comparison.TUNE_METRICS) picks its reported run.
  config.tune_scales = (0.5, 1.0, 1.5)
  config.tune_metric = "nll_mc"
  config.epochs = 40
  config.batch_size = 64
  config.learning_rate = 1e-3
  config.weight_decay = 0.0
  # Concrete dropout (Gal et al. 2017): weight_regularizer = l^2 / N, dropout_regularizer =
  # 1 / N for a cross-entropy loss (their factor 2 is for the Euclidean loss).
  config.concrete_length_scale = 0.1
  config.mc_samples = 100
  config.mc_chunk_size = 50
  config.ece_bins = 15
  # When does dropout hurt? MLPs of two sizes on two training-set sizes, every rate and
  # seed of a cell trained as one vmapped program.
  config.sweep_rates = (0.0, 0.1, 0.3, 0.5, 0.7)
  config.sweep_small_hidden = (16,)
  config.sweep_large_hidden = (256, 256)
  config.sweep_train_fractions = (0.1, 1.0)
  config.sweep_seeds = 2
  # Dropout and BatchNorm: MLP (256, 256), input/hidden rates 0.2/0.5.
  config.batchnorm_hidden = (256, 256)
  # Sequences: the digits read row by row (8 steps of 8 pixels) by an LSTM.
  config.lstm_hidden = 64
  config.lstm_rate = 0.3
  if arg == "mnist":
    config.dataset = "mnist"
    config.epochs = 5
    config.batch_size = 128
    config.block_size = 5
    config.sweep_train_fractions = (0.02, 1.0)
  elif arg == "quick":
    config.tune_scales = (0.5, 1.0)
    config.channels = (8, 8)
    config.dense_features = 16
    config.epochs = 2
    config.mc_samples = 4
    config.mc_chunk_size = 2
    config.sweep_rates = (0.0, 0.5)
    config.sweep_large_hidden = (32,)
    config.sweep_seeds = 1
    config.batchnorm_hidden = (16,)
    config.lstm_hidden = 8
  elif arg not in (None, ""):
    raise ValueError(f"Unknown config option {arg!r}; options: 'mnist', 'quick'.")
  return config
