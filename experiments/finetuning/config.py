"""Dropout in fine-tuning: attention, feed-forward and LoRA dropout on a small related task.

A Transformer classifier reads images as sequences of rows and is pretrained on digits
0-4; it is then fine-tuned on digits 5-9 with a few labelled images per class, either in
full or through LoRA (rank-r updates of every block's linear layers, the rest frozen but
the new head). Both run over a grid of attention/feed-forward dropout rates, LoRA also
over ``lora_dropout``; every run of one method, training size and seed is one vmapped
program over the rates (the seeds run one after another: each draws its own images, and
`fit_ensemble`'s members share one training set). Test error, NLL and ECE (dropout off)
on the 5-9 test images, mean ± s.e. over seeds, each setting paired against no dropout;
and the cost of a training step with dropout relative to one without.

No paper is reproduced: the study answers which of the common settings (attention and
feed-forward dropout 0.1, ``lora_dropout`` 0.05-0.1) the numbers support on small data.

MNIST (needs the data dir; about an hour on one CPU core, resumable per run):
  python -m experiments.main --config=experiments/finetuning/config.py:mnist \
      --workdir=runs/finetuning_mnist --config.data_dir=../shared/data
Embedded digits (minutes): --config=experiments/finetuning/config.py
CPU smoke run: --config=experiments/finetuning/config.py:quick
"""

import ml_collections

from experiments import config_base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = config_base.study_config("finetuning", arg, ("mnist", "quick"))
  config.dataset = "digits"
  config.validation_size = 0
  config.pretrain_classes = (0, 1, 2, 3, 4)
  config.finetune_classes = (5, 6, 7, 8, 9)
  # The Transformer (dropjax.models.TransformerClassifier): one token per image row.
  config.features = 64
  config.num_heads = 4
  config.num_blocks = 2
  # Pretraining: every dropout position (embedding, attention, feed-forward, residual).
  config.pretrain_rate = 0.1
  config.pretrain_epochs = 20
  config.pretrain_batch_size = 64
  config.pretrain_learning_rate = 1e-3
  # Fine-tuning: labelled images of the new classes (a balanced draw per seed), and a
  # fixed number of Adam steps whatever their count (epochs = steps * batch / size).
  config.train_sizes = (50, 150, 400)
  config.finetune_steps = 300
  config.batch_size = 32
  config.methods = ("full", "lora")
  # The grid: the attention-probability and feed-forward rate (one value for both), and
  # LoRA's lora_dropout. Embedding and residual dropout stay at `other_rate`.
  config.dropout_rates = (0.0, 0.1, 0.2, 0.3)
  config.lora_rates = (0.0, 0.05, 0.1)
  config.other_rate = 0.0
  config.full_learning_rate = 3e-4
  config.lora_learning_rate = 1e-3
  # PEFT's common r = 8, alpha = 16 on every block's qkv, out, ffn1 and ffn2.
  config.lora_rank = 8
  config.lora_alpha = 16.0
  config.num_seeds = 3
  config.ece_bins = 15
  # Step-time measurement: steps timed per setting (after a warm-up), best of repeats.
  config.timing_steps = 20
  config.timing_repeats = 5
  if arg == "mnist":
    config.dataset = "mnist"
    config.pretrain_epochs = 3
    config.pretrain_batch_size = 128
    config.train_sizes = (250, 1000, 4000)
    config.finetune_steps = 500
    config.batch_size = 64
  elif arg == "quick":
    config.features = 16
    config.num_heads = 2
    config.num_blocks = 1
    config.pretrain_epochs = 2
    config.train_sizes = (20, 50)
    config.finetune_steps = 6
    config.dropout_rates = (0.0, 0.1)
    config.lora_rates = (0.0, 0.05)
    config.lora_rank = 2
    config.lora_alpha = 4.0
    config.num_seeds = 2
    config.timing_steps = 2
    config.timing_repeats = 1
  return config
