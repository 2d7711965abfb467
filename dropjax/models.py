"""Models with pluggable dropout: one architecture, any variant, rates per position.

Which layer a variant puts at each position comes from the registry,
`dropjax.variants`: `VARIANTS` are its variants with dense and conv rates, and
`dense_dropout`, `feature_map_dropout`, `residual_dropout` and the dense layers ask
`dropjax.variants.build` for the layer. Pinned study setting: DropBlock is built with
``shared_across_channels=True`` (the registry's feature-map keywords), as when the
committed variant-comparison results were computed.

Each model places ``dropout(variant) -> weight layer`` pairs, so that concrete dropout's
penalty knows which weights each learned rate feeds: `MLP` and `ConvNet` take
``weight_regularizer`` and ``dropout_regularizer`` and define ``penalty()``, which
`dropjax.train.classification_loss` adds to the loss (`dropjax.penalties`).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from dropjax import conv as conv_lib
from dropjax import layers, variants
from dropjax.ops import drop_path_rates
from dropjax.penalties import check_coefficient

# The variants registered when dropjax was imported; `_check_variant` also accepts any
# registered since (`dropjax.variants.model_variants`).
VARIANTS = variants.model_variants()
# The convolution primitive of the conv models (``jax.lax.conv_general_dilated``'s signature).
ConvFn = Callable[..., jax.Array]


def _check_variant(variant: str) -> None:
  allowed = variants.model_variants()
  if variant not in allowed:
    raise ValueError(f"`variant` must be one of {allowed}; got {variant!r}.")


def activation_for(variant: str):
  """The variant's activation in the registry (SELU for alpha dropout), else ReLU."""
  return variants.get(variant).activation or jax.nn.relu


def _or_identity(layer: nnx.Module | None) -> nnx.Module:
  return layers.Identity() if layer is None else layer


def dense_dropout(variant: str, rate: float, *, rngs: nnx.Rngs) -> nnx.Module:
  """The dropout layer a variant places before a dense layer (`Identity` for none).

  Feature-map variants (spatial dropout, DropBlock) place their registry
  ``dense_equivalent``, standard dropout.
  """
  _check_variant(variant)
  return _or_identity(variants.build(variant, variants.DENSE_INPUT, rate, rngs=rngs))


def feature_map_dropout(
    variant: str, rate: float, *, block_size: int, rngs: nnx.Rngs
) -> nnx.Module:
  """The dropout layer a variant places before a convolution (NHWC maps)."""
  _check_variant(variant)
  return _or_identity(variants.build(variant, variants.FEATURE_MAPS, rate, rngs=rngs,
                                     block_size=block_size))


def residual_dropout(variant: str, rate: float, *, rngs: nnx.Rngs) -> nnx.Module:
  """The layer a variant places on a residual branch (drop-path), else `Identity`."""
  _check_variant(variant)
  return _or_identity(variants.build(variant, variants.RESIDUAL, rate, rngs=rngs))


def _dense(variant, din, dout, rate, rngs):
  layer = variants.build(variant, variants.WEIGHTS, rate, rngs=rngs, in_features=din,
                         out_features=dout)
  return nnx.Linear(din, dout, rngs=rngs) if layer is None else layer


def concrete_regularization(
    pairs: Sequence[tuple[nnx.Module, nnx.Module, int]],
    weight_regularizer: float,
    dropout_regularizer: float,
) -> jax.Array:
  """Sum of Concrete-dropout penalties over ``(dropout layer, weight layer, input_dim)``."""
  total = jnp.zeros(())
  for drop, layer, input_dim in pairs:
    if isinstance(drop, layers.ConcreteDropout):
      total = total + drop.regularizer(
          layer.kernel[...], input_dim=input_dim, weight_regularizer=weight_regularizer,
          dropout_regularizer=dropout_regularizer,
      )
  return total


BATCH_NORM_PLACEMENTS = (None, "after_dropout", "before_dropout")


def _check_batch_norm(batch_norm: str | None) -> None:
  if batch_norm not in BATCH_NORM_PLACEMENTS:
    raise ValueError(f"`batch_norm` must be one of {BATCH_NORM_PLACEMENTS}; got {batch_norm!r}.")


class MLP(nnx.Module):
  """``[drop -> dense -> (BN) -> act] * depth -> drop -> dense`` with per-position rates.

  ``batch_norm`` sets where BatchNorm sits relative to dropout (Li et al. 2019, "the
  variance shift"):

  * None: no BatchNorm.
  * ``"after_dropout"``: BatchNorm after every hidden dense layer, with dropout at every
    position. Dropout feeds BatchNorm, whose training statistics then differ from those at
    inference.
  * ``"before_dropout"``: BatchNorm after every hidden dense layer, and dropout only before
    the output layer, after the last BatchNorm (their recommendation).

  Args:
    in_features: input size (inputs are flattened).
    hidden: hidden layer sizes.
    num_outputs: output size.
    variant: one of `VARIANTS` (feature-map variants act as standard dropout here).
    input_rate: the rate before the first layer.
    hidden_rate: the rate before every later layer; or a sequence, one per hidden layer.
    batch_norm: one of `BATCH_NORM_PLACEMENTS`.
    weight_regularizer, dropout_regularizer: the Concrete-dropout penalty coefficients of
      `penalty` (Gal et al.: ``l**2 / N`` and ``1 / N`` for a cross-entropy loss on N
      examples); 0 for none. Only concrete-dropout layers are penalised.
    rngs: ``nnx.Rngs`` with ``params`` and ``dropout`` streams.
  """

  def __init__(
      self,
      in_features: int,
      hidden: Sequence[int],
      num_outputs: int,
      *,
      variant: str = "dropout",
      input_rate: float = 0.2,
      hidden_rate: float | Sequence[float] = 0.5,
      batch_norm: str | None = None,
      weight_regularizer: float = 0.0,
      dropout_regularizer: float = 0.0,
      rngs: nnx.Rngs,
  ):
    _check_variant(variant)
    _check_batch_norm(batch_norm)
    self.weight_regularizer = check_coefficient(weight_regularizer, "weight_regularizer")
    self.dropout_regularizer = check_coefficient(dropout_regularizer, "dropout_regularizer")
    if isinstance(hidden_rate, Sequence):
      rates = list(hidden_rate)
    else:
      rates = [hidden_rate] * len(hidden)
    if len(rates) != len(hidden):
      raise ValueError(f"`hidden_rate` needs one rate per hidden layer ({len(hidden)}).")
    sizes = [in_features, *hidden, num_outputs]
    all_rates = [input_rate, *rates]
    if batch_norm == "before_dropout":
      all_rates = [0.0] * len(hidden) + [all_rates[-1]]
    self.variant = variant
    self.activation = activation_for(variant)
    self.drops = nnx.List([dense_dropout(variant, r, rngs=rngs) for r in all_rates])
    self.denses = nnx.List(
        [_dense(variant, sizes[i], sizes[i + 1], all_rates[i], rngs) for i in range(len(sizes) - 1)]
    )
    norms = [nnx.BatchNorm(h, rngs=rngs) if batch_norm else layers.Identity() for h in hidden]
    self.norms = nnx.List(norms)
    self.input_dims = tuple(sizes[:-1])

  @property
  def output_layer(self) -> nnx.Module:
    return self.denses[-1]

  def penultimate(self, x: jax.Array) -> jax.Array:
    """Every layer before the last dropout: the inputs of `output_layer` (what a
    last-layer Laplace approximation, `dropjax.laplace`, conditions on)."""
    h = x.reshape(x.shape[0], -1)
    for i in range(len(self.denses) - 1):
      h = self.activation(self.norms[i](self.denses[i](self.drops[i](h))))
    return h

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.output_layer(self.drops[-1](self.penultimate(x)))

  def penalty(self) -> jax.Array:
    """The Concrete-dropout penalty of every ``(dropout, dense)`` pair, for the loss."""
    pairs = zip(self.drops, self.denses, self.input_dims, strict=True)
    return concrete_regularization(list(pairs), self.weight_regularizer,
                                   self.dropout_regularizer)


class ResidualBlock(nnx.Module):
  """``act(x + drop_path(conv(act(conv(x)))))``; ``variant``'s residual layer at ``path_rate``."""

  def __init__(self, channels: int, *, path_rate: float, activation, rngs: nnx.Rngs,
               conv_general_dilated: ConvFn = conv_lib.conv_general_dilated,
               variant: str = "drop_path"):
    self.conv1 = nnx.Conv(channels, channels, (3, 3), conv_general_dilated=conv_general_dilated,
                          rngs=rngs)
    self.conv2 = nnx.Conv(channels, channels, (3, 3), conv_general_dilated=conv_general_dilated,
                          rngs=rngs)
    self.drop_path = residual_dropout(variant, path_rate, rngs=rngs)
    self.activation = activation

  def __call__(self, x):
    branch = self.conv2(self.activation(self.conv1(x)))
    return self.activation(x + self.drop_path(branch))


class ConvNet(nnx.Module):
  """A small residual CNN for 8x8 digits or 28x28 MNIST (NHWC).

  Per stage: ``feature-map dropout -> conv 3x3 -> act -> residual block -> 2x2 avg-pool``;
  then ``dropout -> dense -> act -> dropout -> dense``. Spatial dropout and DropBlock act on
  the maps, drop-path on the residual branches (linear depth rule), DropConnect on the
  dense weights, the other variants everywhere.

  Args:
    in_channels: input channels.
    num_classes: output classes.
    spatial_size: input height = width (sets the flattened size).
    variant: one of `VARIANTS`.
    conv_rate: the rate of the feature-map positions (for drop-path: of the last block).
    dense_rate: the rate of the dense positions.
    channels: channels per stage.
    dense_features: the hidden dense width.
    block_size: DropBlock's block size (clipped to each stage's map size).
    batch_norm: None, ``"after_dropout"`` (BatchNorm after every stage convolution, fed by
      the feature-map dropout) or ``"before_dropout"`` (the same BatchNorms, dropout only
      in the dense head after the last of them); see `MLP`.
    conv_general_dilated: the convolution primitive. The default,
      `dropjax.conv.conv_general_dilated`, equals ``jax.lax.conv_general_dilated`` bitwise
      and keeps its gradients fast inside ``lax.scan``/``fori_loop`` on CPU.
    weight_regularizer, dropout_regularizer: the Concrete-dropout penalty coefficients of
      `penalty`; see `MLP`.
    rngs: ``nnx.Rngs`` with ``params`` and ``dropout`` streams.
  """

  def __init__(
      self,
      in_channels: int,
      num_classes: int,
      *,
      spatial_size: int,
      variant: str = "dropout",
      conv_rate: float = 0.1,
      dense_rate: float = 0.5,
      channels: Sequence[int] = (32, 64),
      dense_features: int = 128,
      block_size: int = 3,
      batch_norm: str | None = None,
      conv_general_dilated: ConvFn = conv_lib.conv_general_dilated,
      weight_regularizer: float = 0.0,
      dropout_regularizer: float = 0.0,
      rngs: nnx.Rngs,
  ):
    _check_variant(variant)
    _check_batch_norm(batch_norm)
    self.weight_regularizer = check_coefficient(weight_regularizer, "weight_regularizer")
    self.dropout_regularizer = check_coefficient(dropout_regularizer, "dropout_regularizer")
    if batch_norm == "before_dropout":
      conv_rate = 0.0
    self.variant = variant
    self.activation = activation_for(variant)
    # Residual variants (drop-path) follow the linear depth rule, conv_rate the last block's.
    path_rates = (
        drop_path_rates(len(channels), conv_rate) if variants.applies(variant, variants.RESIDUAL)
        else (0.0,) * len(channels)
    )
    drops, convs, norms, blocks, input_dims = [], [], [], [], []
    size, cin = spatial_size, in_channels
    for stage, cout in enumerate(channels):
      # No feature-map dropout on the raw image: it would drop the only input channel.
      rate = conv_rate if stage > 0 else 0.0
      drops.append(
          feature_map_dropout(variant, rate, block_size=min(block_size, size), rngs=rngs)
      )
      convs.append(nnx.Conv(cin, cout, (3, 3), conv_general_dilated=conv_general_dilated,
                            rngs=rngs))
      norms.append(nnx.BatchNorm(cout, rngs=rngs) if batch_norm else layers.Identity())
      blocks.append(ResidualBlock(cout, path_rate=path_rates[stage], activation=self.activation,
                                  conv_general_dilated=conv_general_dilated, variant=variant,
                                  rngs=rngs))
      input_dims.append(cin)
      size, cin = size // 2, cout
    self.drops, self.convs, self.norms = nnx.List(drops), nnx.List(convs), nnx.List(norms)
    self.blocks = nnx.List(blocks)
    flat = size * size * cin
    self.dense_drops = nnx.List(
        [dense_dropout(variant, dense_rate, rngs=rngs) for _ in range(2)]
    )
    self.dense1 = _dense(variant, flat, dense_features, dense_rate, rngs)
    self.dense2 = _dense(variant, dense_features, num_classes, dense_rate, rngs)
    self.pairs_input_dims = (*input_dims, flat, dense_features)

  def __call__(self, x: jax.Array) -> jax.Array:
    h = x
    for drop, conv, norm, block in zip(self.drops, self.convs, self.norms, self.blocks,
                                       strict=True):
      h = block(self.activation(norm(conv(drop(h)))))
      h = nnx.avg_pool(h, (2, 2), strides=(2, 2))
    h = h.reshape(h.shape[0], -1)
    h = self.activation(self.dense1(self.dense_drops[0](h)))
    return self.dense2(self.dense_drops[1](h))

  def penalty(self) -> jax.Array:
    """The Concrete-dropout penalty of every ``(dropout, conv or dense)`` pair, for the loss."""
    pairs = [
        *zip(self.drops, self.convs, strict=True),
        (self.dense_drops[0], self.dense1),
        (self.dense_drops[1], self.dense2),
    ]
    triples = [(d, w, k) for (d, w), k in zip(pairs, self.pairs_input_dims, strict=True)]
    return concrete_regularization(triples, self.weight_regularizer, self.dropout_regularizer)


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """``nnx.max_pool(x, (2, 2), strides=(2, 2))`` (VALID) of ``(batch, H, W, C)`` maps.

  A reshape and a max: its gradient is an elementwise select, where ``max_pool``'s is
  XLA's select-and-scatter, which on XLA:CPU made a quarter of an MNIST LeNet-5 train
  step. Values and gradients are equal (bitwise) unless a window holds two equal maxima:
  then ``max_pool`` sends the gradient to the first, this splits it between them. After a
  ReLU the common tie, a window of zeros, gets no gradient either way.

  Example:
    >>> max_pool_2x2(jnp.arange(16.0).reshape(1, 4, 4, 1))[0, :, :, 0]
    Array([[ 5.,  7.],
           [13., 15.]], dtype=float32)
  """
  if x.ndim != 4:
    raise ValueError(f"`x` must be (batch, height, width, channels); got shape {x.shape}.")
  b, h, w, c = x.shape
  x = x[:, : h // 2 * 2, : w // 2 * 2]
  return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


# flax's own default for Linear and Conv kernels.
DEFAULT_KERNEL_INIT = nnx.initializers.lecun_normal()


class KerasMnistCNN(nnx.Module):
  """Keras's MNIST example CNN, the model of Gal, Islam & Ghahramani (2017).

  ``conv 4x4 (32) -> relu -> conv 4x4 (32) -> relu -> max-pool 2x2 -> dropout(conv_rate)
  -> dense 128 -> relu -> dropout(dense_rate) -> dense``, valid padding. Rates may be
  arrays (traced under `jax.vmap`).

  Args:
    num_classes: output classes.
    spatial_size: input height = width (28 for MNIST, 8 for the embedded digits).
    conv_rate: dropout rate after the pooling (0.25 in the paper).
    dense_rate: dropout rate before the output layer (0.5 in the paper).
    channels: convolution filters, one int for both convolutions or a pair (Keras's
      current MNIST example, Ovadia et al.'s "LeNet", uses (32, 64) with 3x3 kernels).
    dense_features: the hidden dense width.
    kernel_size: the convolutions' size; None: 4 (as in the authors' code) for inputs of 16
      pixels or more, else 3 (a 2x2 map is left on the 8x8 digits).
    kernel_init: the initialiser of every kernel (flax's default, LeCun normal; Keras
      used Glorot uniform). Biases start at 0.
    conv_general_dilated: the convolution primitive. The default,
      `dropjax.conv.conv_general_dilated`, equals ``jax.lax.conv_general_dilated`` bitwise
      and keeps its gradients fast inside ``lax.scan``/``fori_loop`` on CPU.
    rngs: ``nnx.Rngs`` with ``params`` and ``dropout`` streams.

  References:
    Gal, Islam, Ghahramani. "Deep Bayesian active learning with image data." ICML 2017.
  """

  def __init__(self, num_classes: int = 10, *, spatial_size: int = 28, conv_rate: float = 0.25,
               dense_rate: float = 0.5, channels: int | tuple[int, int] = 32,
               dense_features: int = 128, kernel_size: int | None = None,
               kernel_init: nnx.Initializer = DEFAULT_KERNEL_INIT,
               conv_general_dilated: ConvFn = conv_lib.conv_general_dilated, rngs: nnx.Rngs):
    kernel = kernel_size if kernel_size is not None else (4 if spatial_size >= 16 else 3)
    if not isinstance(kernel, int) or kernel < 1:
      raise ValueError(f"`kernel_size` must be a positive int or None; got {kernel_size!r}.")
    pooled = (spatial_size - 2 * (kernel - 1)) // 2
    if pooled < 1:
      raise ValueError(f"`spatial_size`={spatial_size} is too small for two {kernel}x{kernel} "
                       "convolutions and a 2x2 pool.")
    make_conv = functools.partial(nnx.Conv, kernel_size=(kernel, kernel), padding="VALID",
                                  kernel_init=kernel_init,
                                  conv_general_dilated=conv_general_dilated, rngs=rngs)
    first, second = (channels, channels) if isinstance(channels, int) else tuple(channels)
    self.conv1 = make_conv(1, first)
    self.conv2 = make_conv(first, second)
    self.conv_drop = dense_dropout("dropout", conv_rate, rngs=rngs)
    self.dense1 = nnx.Linear(pooled * pooled * second, dense_features,
                             kernel_init=kernel_init, rngs=rngs)
    self.dense_drop = dense_dropout("dropout", dense_rate, rngs=rngs)
    self.dense2 = nnx.Linear(dense_features, num_classes, kernel_init=kernel_init, rngs=rngs)

  def features(self, x: jax.Array) -> jax.Array:
    """The deterministic part before the first dropout: MC sampling can compute it once."""
    h = jax.nn.relu(self.conv2(jax.nn.relu(self.conv1(x))))
    return max_pool_2x2(h)

  def _hidden(self, h: jax.Array) -> jax.Array:
    h = self.conv_drop(h).reshape(h.shape[0], -1)
    return jax.nn.relu(self.dense1(h))

  @property
  def output_layer(self) -> nnx.Module:
    return self.dense2

  def penultimate(self, x: jax.Array) -> jax.Array:
    """The inputs of `output_layer` (for `dropjax.laplace`)."""
    return self._hidden(self.features(x))

  def head(self, h: jax.Array) -> jax.Array:
    return self.dense2(self.dense_drop(self._hidden(h)))

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.head(self.features(x))


class LeNet5(nnx.Module):
  """LeNet-5 (LeCun et al. 1998) with ReLU, max-pooling and dropout before each dense layer.

  ``conv 5x5 (6) -> relu -> pool -> conv 5x5 (16) -> relu -> pool -> [dropout -> dense]
  (120, 84) with relu -> dropout -> dense``. "SAME" padding, so it takes 28x28 MNIST and
  8x8 digits alike. This is the classic layout; the exact LeNet variant of Ovadia et al.
  (2019) was not checked.

  Args:
    num_classes: output classes.
    spatial_size: input height = width.
    dropout_rate: the rate before each dense layer (Ovadia et al. tuned 0.303 for LeNet).
    conv_general_dilated: the convolution primitive. The default,
      `dropjax.conv.conv_general_dilated`, equals ``jax.lax.conv_general_dilated`` bitwise
      and keeps its gradients fast inside ``lax.scan``/``fori_loop`` on CPU.
    rngs: ``nnx.Rngs`` with ``params`` and ``dropout`` streams.
  """

  def __init__(self, num_classes: int = 10, *, spatial_size: int = 28,
               dropout_rate: float = 0.3,
               conv_general_dilated: ConvFn = conv_lib.conv_general_dilated, rngs: nnx.Rngs):
    make_conv = functools.partial(nnx.Conv, kernel_size=(5, 5), padding="SAME",
                             conv_general_dilated=conv_general_dilated, rngs=rngs)
    self.conv1 = make_conv(1, 6)
    self.conv2 = make_conv(6, 16)
    flat = (spatial_size // 4) ** 2 * 16
    sizes = [flat, 120, 84, num_classes]
    self.drops = nnx.List([dense_dropout("dropout", dropout_rate, rngs=rngs) for _ in range(3)])
    self.denses = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in itertools.pairwise(sizes)])

  def features(self, x: jax.Array) -> jax.Array:
    """The convolutions: deterministic, so MC sampling can compute them once."""
    h = max_pool_2x2(jax.nn.relu(self.conv1(x)))
    h = max_pool_2x2(jax.nn.relu(self.conv2(h)))
    return h.reshape(h.shape[0], -1)

  def _hidden(self, h: jax.Array) -> jax.Array:
    for drop, dense in zip(self.drops[:-1], self.denses[:-1], strict=True):
      h = jax.nn.relu(dense(drop(h)))
    return h

  @property
  def output_layer(self) -> nnx.Module:
    return self.denses[-1]

  def penultimate(self, x: jax.Array) -> jax.Array:
    """The inputs of `output_layer` (for `dropjax.laplace`)."""
    return self._hidden(self.features(x))

  def head(self, h: jax.Array) -> jax.Array:
    return self.denses[-1](self.drops[-1](self._hidden(h)))

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.head(self.features(x))


class SequenceClassifier(nnx.Module):
  """An LSTM over ``(batch, time, features)``, classifying from the last state.

  ``mode="variational"`` shares each sequence's input and state masks over time (Gal &
  Ghahramani 2016); ``mode="naive"`` draws fresh masks at every step. ``output_rate``
  drops the last state before the classifier.
  """

  def __init__(
      self,
      in_features: int,
      hidden: int,
      num_classes: int,
      *,
      mode: str = "variational",
      input_rate: float = 0.25,
      state_rate: float = 0.25,
      output_rate: float = 0.25,
      rngs: nnx.Rngs,
  ):
    self.lstm = layers.LSTM(in_features, hidden, input_rate=input_rate, state_rate=state_rate,
                            mode=mode, rngs=rngs)
    self.drop = dense_dropout("dropout", output_rate, rngs=rngs)
    self.head = nnx.Linear(hidden, num_classes, rngs=rngs)

  def __call__(self, xs: jax.Array) -> jax.Array:
    if xs.ndim == 4:  # images (N, H, W, 1) read row by row
      xs = xs.reshape(xs.shape[0], xs.shape[1], -1)
    return self.head(self.drop(self.lstm(xs)[:, -1]))


class MultiHeadAttention(nnx.Module):
  """Self-attention with dropout on the attention probabilities."""

  def __init__(self, features: int, num_heads: int, *, attention_rate: float, rngs: nnx.Rngs):
    if features % num_heads:
      raise ValueError(f"`features`={features} must be divisible by `num_heads`={num_heads}.")
    self.num_heads = num_heads
    self.qkv = nnx.Linear(features, 3 * features, rngs=rngs)
    self.out = nnx.Linear(features, features, rngs=rngs)
    self.drop = dense_dropout("dropout", attention_rate, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    batch, length, features = x.shape
    head = features // self.num_heads
    q, k, v = jnp.split(self.qkv(x).reshape(batch, length, 3 * self.num_heads, head), 3, axis=2)
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(head).astype(x.dtype)
    probs = self.drop(jax.nn.softmax(logits, axis=-1))
    return self.out(jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(batch, length, features))


class TransformerBlock(nnx.Module):
  """Pre-norm block: attention-probability, feed-forward and residual dropout."""

  def __init__(self, features: int, num_heads: int, mlp_features: int, *, attention_rate: float,
               ffn_rate: float, residual_rate: float, rngs: nnx.Rngs):
    self.norm1 = nnx.LayerNorm(features, rngs=rngs)
    self.attention = MultiHeadAttention(features, num_heads, attention_rate=attention_rate,
                                        rngs=rngs)
    self.norm2 = nnx.LayerNorm(features, rngs=rngs)
    self.ffn1 = nnx.Linear(features, mlp_features, rngs=rngs)
    self.ffn_drop = dense_dropout("dropout", ffn_rate, rngs=rngs)
    self.ffn2 = nnx.Linear(mlp_features, features, rngs=rngs)
    self.residual_drop1 = dense_dropout("dropout", residual_rate, rngs=rngs)
    self.residual_drop2 = dense_dropout("dropout", residual_rate, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = x + self.residual_drop1(self.attention(self.norm1(x)))
    h = self.ffn2(self.ffn_drop(jax.nn.gelu(self.ffn1(self.norm2(x)))))
    return x + self.residual_drop2(h)


# The linear layers of a `TransformerBlock` that LoRA fine-tuning adapts by default.
LORA_TARGETS = ("qkv", "out", "ffn1", "ffn2")


class TransformerClassifier(nnx.Module):
  """Tokens (e.g. image rows) -> embedding (+ embedding dropout) -> blocks -> mean-pool -> head.

  Dropout sits at four places: the embedding (``embedding_rate``), the attention
  probabilities (``attention_rate``), the feed-forward hidden layer (``ffn_rate``) and each
  residual branch (``residual_rate``). For LoRA fine-tuning with ``lora_dropout``, wrap a
  trained model with ``dropjax.layers.add_lora(model, LORA_TARGETS, rank=..., rate=...,
  trainable=("head",), rngs=...)``: the blocks' linear layers get low-rank updates, and
  everything but the updates and the head is frozen.
  """

  def __init__(
      self,
      in_features: int,
      num_classes: int,
      *,
      max_length: int,
      features: int = 64,
      num_heads: int = 4,
      num_blocks: int = 2,
      embedding_rate: float = 0.1,
      attention_rate: float = 0.1,
      ffn_rate: float = 0.1,
      residual_rate: float = 0.1,
      rngs: nnx.Rngs,
  ):
    self.embed = nnx.Linear(in_features, features, rngs=rngs)
    self.position = nnx.Param(0.02 * jax.random.normal(rngs.params(), (max_length, features)))
    self.embed_drop = dense_dropout("dropout", embedding_rate, rngs=rngs)
    self.blocks = nnx.List([
        TransformerBlock(features, num_heads, 2 * features, attention_rate=attention_rate,
                         ffn_rate=ffn_rate, residual_rate=residual_rate, rngs=rngs)
        for _ in range(num_blocks)
    ])
    self.norm = nnx.LayerNorm(features, rngs=rngs)
    self.head = nnx.Linear(features, num_classes, rngs=rngs)

  def __call__(self, xs: jax.Array) -> jax.Array:
    if xs.ndim == 4:  # images (N, H, W, 1): one token per row
      xs = xs.reshape(xs.shape[0], xs.shape[1], -1)
    h = self.embed_drop(self.embed(xs) + self.position[: xs.shape[1]])
    for block in self.blocks:
      h = block(h)
    return self.head(self.norm(h).mean(axis=1))
