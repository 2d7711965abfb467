"""dropjax: dropout variants as fast functional JAX ops, Flax NNX layers and MC dropout."""

from dropjax import layers, masks, penalties, prng, schedules, variants
from dropjax.concrete import (
    concrete_dropout,
    concrete_dropout_regularizer,
    spatial_concrete_dropout,
)
from dropjax.ops import (
    alpha_dropout,
    drop_path,
    drop_path_rates,
    dropblock,
    dropblock_expected_drop_fraction,
    dropblock_seed_rate,
    dropconnect,
    dropconnect_dense,
    dropout,
    dropout_mask,
    gaussian_dropout,
    per_depth_rates,
    spatial_dropout,
    variational_dropout,
)
from dropjax.schedules import (
    constant_schedule,
    curriculum_schedule,
    linear_decay_schedule,
)

__version__ = "0.1.0"

__all__ = [
    "alpha_dropout",
    "concrete_dropout",
    "concrete_dropout_regularizer",
    "constant_schedule",
    "curriculum_schedule",
    "drop_path",
    "drop_path_rates",
    "dropblock",
    "dropblock_expected_drop_fraction",
    "dropblock_seed_rate",
    "dropconnect",
    "dropconnect_dense",
    "dropout",
    "dropout_mask",
    "gaussian_dropout",
    "layers",
    "linear_decay_schedule",
    "masks",
    "penalties",
    "per_depth_rates",
    "prng",
    "schedules",
    "spatial_concrete_dropout",
    "spatial_dropout",
    "variants",
    "variational_dropout",
]
