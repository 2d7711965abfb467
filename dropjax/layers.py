"""Flax NNX layers: thin modules over the functional ops.

Every layer follows `flax.nnx.Dropout`'s conventions: it owns a forked ``'dropout'`` RNG
stream, ``.train()`` / ``.eval()`` (or ``deterministic=``) switch sampling on and off, and a
key passed as ``rngs=`` at call time replaces the stream, so that
``Layer(...)(x, rngs=key) == op(key, x, ...)``. A call-time ``rate=`` overrides the stored
rate and may be traced (schedules without recompiling).

MC dropout: ``mc=True`` (or `set_mc` on a whole model) keeps sampling after ``.eval()``
while BatchNorm and everything else stay in inference mode. An explicit call-time
``deterministic=`` wins over both flags.

Models built from Flax's own layers work too: `set_mc`, `reseed`, `stochastic_layers` and
`dropjax.mc.module_forward` treat every ``flax.nnx.Dropout`` as a dropout layer, and
`replace_dropout` swaps them for any dropjax variant at the same positions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dropjax import concrete, ops
from dropjax._validation import check_key, check_positive_int, check_rate

ArrayLike = Any
_LECUN_NORMAL = nnx.initializers.lecun_normal()
RngsLike = nnx.Rngs | nnx.RngStream | jax.Array | None


class Rate(nnx.Variable):
  """A dropout rate held as state: batched under `jax.vmap`, never trained by optimizers
  that update ``nnx.Param`` only."""


def value_of(rate: Any) -> Any:
  """The rate itself, unwrapping a `Rate` variable."""
  return rate[...] if isinstance(rate, nnx.Variable) else rate


class StochasticLayer(nnx.Module):
  """Base class: the deterministic/MC switches and the RNG stream."""

  def __init__(
      self,
      *,
      deterministic: bool = False,
      mc: bool = False,
      rng_collection: str = "dropout",
      rngs: nnx.Rngs | nnx.RngStream | None = None,
  ):
    self.deterministic = deterministic
    self.mc = mc
    self.rng_collection = rng_collection
    if isinstance(rngs, nnx.Rngs):
      self.rngs = rngs[rng_collection].fork()
    elif isinstance(rngs, nnx.RngStream):
      self.rngs = rngs.fork()
    elif rngs is None:
      self.rngs = nnx.data(None)
    else:
      raise TypeError(f"`rngs` must be nnx.Rngs, nnx.RngStream or None; got {type(rngs)}.")

  @staticmethod
  def _rate_attribute(rate: Any, name: str = "rate") -> Any:
    """A Python rate stays a static attribute; an array (maybe traced) becomes `Rate` state.

    So a layer built inside `jax.vmap` with a batched rate carries it in its state: one
    compiled program trains models with different rates.
    """
    check_rate(rate, name)
    if isinstance(rate, (int, float, np.floating, np.integer)):
      return float(rate)
    return Rate(jnp.asarray(rate, jnp.float32))

  def _sampling(self, deterministic: bool | None) -> bool:
    if deterministic is not None:
      return not deterministic
    return self.mc or not self.deterministic

  def _key(self, rngs: RngsLike) -> jax.Array:
    if rngs is None:
      rngs = self.rngs
    if isinstance(rngs, nnx.Rngs):
      return rngs[self.rng_collection]()
    if isinstance(rngs, nnx.RngStream):
      return rngs()
    if isinstance(rngs, jax.Array):
      check_key(rngs, "rngs")
      return rngs
    raise ValueError(
        f"{type(self).__name__} is sampling but has no RNG: pass `rngs=nnx.Rngs(...)` to the "
        "constructor or a key as `rngs=` to the call."
    )

  def set_view(self, deterministic: bool | None = None, mc: bool | None = None):
    """Used by `nnx.view`."""
    if deterministic is not None:
      self.deterministic = deterministic
    if mc is not None:
      self.mc = mc


def _is_dropout_layer(module: Any) -> bool:
  return isinstance(module, (StochasticLayer, nnx.Dropout))


def _dropout_layers(model: nnx.Module) -> list[tuple[tuple[Any, ...], nnx.Module]]:
  return [(path, m) for path, m in nnx.iter_modules(model) if _is_dropout_layer(m)]


def set_mc(model: nnx.Module, enabled: bool = True, *, raise_if_not_found: bool = True) -> None:
  """Turns MC sampling on (or off) in every dropout layer of ``model``.

  Call after ``model.eval()`` to draw MC-dropout samples with BatchNorm in inference mode.
  dropjax layers get ``mc=enabled`` (they sample after ``.eval()`` while it is set).
  ``flax.nnx.Dropout`` has no MC flag: it gets ``deterministic = not enabled``, so call
  ``model.train()`` again before training.

  Args:
    model: any NNX module.
    enabled: MC sampling on (True) or off (False).
    raise_if_not_found: raise if ``model`` has no dropout layer at all.

  Raises:
    ValueError: ``model`` has no dropout layer and ``raise_if_not_found``.

  Example:
    >>> from flax import nnx
    >>> import dropjax
    >>> layer = dropjax.layers.Dropout(0.5, rngs=nnx.Rngs(0))
    >>> layer.eval(); dropjax.layers.set_mc(layer)
    >>> layer.mc, layer.deterministic
    (True, True)
  """
  found = _dropout_layers(model)
  if not found and raise_if_not_found:
    raise ValueError(
        f"set_mc: {type(model).__name__} has no dropout layer (a dropjax layer or "
        "flax.nnx.Dropout); there is nothing to sample."
    )
  for _, module in found:
    if isinstance(module, StochasticLayer):
      module.mc = enabled
    else:
      module.deterministic = not enabled


def reseed(model: nnx.Module, key: jax.Array) -> None:
  """Sets the RNG stream of every dropout layer in ``model`` from ``key``.

  Layer ``i`` (in graph order; dropjax layers and ``flax.nnx.Dropout`` layers that own a
  stream) gets ``fold_in(key, i)`` with its count reset, whatever its stream is called:
  `nnx.reseed` matches streams by tag, and a layer built from ``nnx.Rngs(0)`` draws from
  the ``'default'`` tag, so reseeding ``dropout=`` would silently leave it alone. Call it
  with ``fold_in(key, step)`` inside a train step (a resumed run draws the same masks) or
  with per-sample keys for MC dropout.
  """
  check_key(key)
  index = 0
  for _, module in _dropout_layers(model):
    if isinstance(module.rngs, nnx.RngStream):
      module.rngs.key.set_value(jax.random.fold_in(key, index))
      module.rngs.count.set_value(jnp.zeros(module.rngs.count.shape, jnp.uint32))
      index += 1


class LayerMode(NamedTuple):
  """One dropout layer of a model, as `stochastic_layers` reports it.

  Attributes:
    path: where the layer sits, e.g. ``"blocks/0/drop"``.
    layer: its class name (``"Dropout"`` for both dropjax's and Flax's; see ``flax``).
    rate: its rate when known (a learned or per-model rate is reported at its current
      value), None when it has several (an LSTM's two) or none.
    sampling: whether a call without ``deterministic=`` draws a mask in the current mode;
      None for a ``flax.nnx.Dropout`` built with ``deterministic=None`` (decided per call).
    flax: True for ``flax.nnx.Dropout``.
  """

  path: str
  layer: str
  rate: float | None
  sampling: bool | None
  flax: bool


def _rate_of(module: nnx.Module) -> float | None:
  if not hasattr(module, "rate"):
    return None
  try:
    value = np.asarray(value_of(module.rate), np.float64)
  except (TypeError, jax.errors.ConcretizationTypeError):
    return None
  return float(value) if value.size == 1 else None


def _samples(module: nnx.Module) -> bool | None:
  if isinstance(module, StochasticLayer):
    return module._sampling(None)
  return None if module.deterministic is None else not module.deterministic


def stochastic_layers(model: nnx.Module) -> list[LayerMode]:
  """Every dropout layer of ``model`` and whether it would sample in the current mode.

  The common bug this catches: dropout left on at inference (``.eval()`` forgotten, or a
  layer left in MC mode) or off during MC sampling. dropjax layers and
  ``flax.nnx.Dropout`` are both reported.

  Args:
    model: any NNX module.

  Returns:
    One `LayerMode` per dropout layer, in graph order.

  Example:
    >>> from flax import nnx
    >>> import dropjax
    >>> model = nnx.Sequential(nnx.Linear(3, 4, rngs=nnx.Rngs(0)), nnx.Dropout(0.5))
    >>> model.eval()
    >>> [(m.path, m.layer, m.rate, m.sampling) for m in dropjax.layers.stochastic_layers(model)]
    [('layers/1', 'Dropout', 0.5, False)]
  """
  return [
      LayerMode("/".join(map(str, path)), type(m).__name__, _rate_of(m), _samples(m),
                isinstance(m, nnx.Dropout))
      for path, m in _dropout_layers(model)
  ]


def check_sampling(model: nnx.Module, sampling: bool, *, context: str) -> None:
  """Raises unless every dropout layer of ``model`` samples (or, with False, none does).

  Args:
    model: any NNX module.
    sampling: the mode ``context`` needs: True for MC sampling, False for deterministic
      (weight-scaling) prediction.
    context: the caller's name, for the message.

  Raises:
    ValueError: listing the layers in the other mode (or undecided), and how to fix it.
  """
  wrong = [m for m in stochastic_layers(model) if m.sampling is not sampling]
  if not wrong:
    return
  listed = ", ".join(f"{m.path or '<root>'} ({m.layer}, sampling={m.sampling})" for m in wrong)
  if sampling:
    fix = "put the model in MC mode: model.eval(); dropjax.layers.set_mc(model)"
  else:
    fix = ("call model.eval() and dropjax.layers.set_mc(model, False) for deterministic "
           "predictions, or use dropjax.mc.mc_predict to sample on purpose")
  what = "these layers do not sample" if sampling else "these dropout layers would sample"
  raise ValueError(f"{context}: the mode is ambiguous: {what}: {listed}. To fix it, {fix}.")


_M = TypeVar("_M", bound=nnx.Module)


def replace_dropout(model: _M, make_layer: Callable[[nnx.Dropout], nnx.Module]) -> _M:
  """Swaps every ``flax.nnx.Dropout`` of ``model`` for ``make_layer(that_layer)``, in place.

  Every other module, parameters included, stays as it is; the new layer takes the old
  one's position (attribute, list entry or `nnx.Sequential` slot) and, if both have one,
  its train/eval flag. Pass the old layer's ``rngs`` to the new one to keep its stream.

  Args:
    model: an NNX model built with ``flax.nnx.Dropout``.
    make_layer: builds the replacement from the Flax layer (its ``rate``,
      ``broadcast_dims`` and ``rngs`` are there to read).

  Returns:
    ``model`` (or the replacement, when ``model`` is itself a ``flax.nnx.Dropout``).

  Raises:
    ValueError: ``model`` has no ``flax.nnx.Dropout``.

  Example:
    >>> from flax import nnx
    >>> import dropjax
    >>> model = nnx.Sequential(nnx.Conv(1, 4, (3, 3), rngs=nnx.Rngs(0)),
    ...                        nnx.Dropout(0.1, rngs=nnx.Rngs(1)))
    >>> model = dropjax.layers.replace_dropout(
    ...     model, lambda d: dropjax.layers.DropBlock(d.rate, block_size=3, rngs=d.rngs))
    >>> type(model.layers[1]).__name__
    'DropBlock'
  """
  if isinstance(model, nnx.Dropout):
    return make_layer(model)
  found = [(path, m) for path, m in nnx.iter_modules(model) if isinstance(m, nnx.Dropout)]
  if not found:
    raise ValueError(f"replace_dropout: {type(model).__name__} has no flax.nnx.Dropout layer.")
  for path, old in found:
    new = make_layer(old)
    if hasattr(new, "deterministic") and old.deterministic is not None:
      new.deterministic = old.deterministic
    _replace_at(model, path, new)
  return model


def _replace_at(model: nnx.Module, path: tuple[Any, ...], new: nnx.Module) -> None:
  """Puts ``new`` at ``path`` (attributes and list indices) inside ``model``."""
  parent = model
  for part in path[:-1]:
    parent = parent[part] if isinstance(part, int) else getattr(parent, part)
  if isinstance(path[-1], int):
    parent[path[-1]] = new
  else:
    setattr(parent, path[-1], new)


class Identity(nnx.Module):
  """No dropout: the ``"none"`` entry of a variant comparison."""

  def __call__(self, x: ArrayLike, **unused: Any) -> jax.Array:
    return x


class Dropout(StochasticLayer):
  """`dropjax.dropout` as a layer (Bernoulli, fast masks, inverted or classic scaling).

  Args:
    rate: the dropout probability, not the keep rate.
    broadcast_dims: axes sharing the mask.
    inverted: inverted (True) or classic (False) scaling; see `dropjax.dropout`.
    bits: random bits per element, or None to choose from the rate.
    deterministic, mc, rng_collection, rngs: see `StochasticLayer`.
  """

  def __init__(
      self,
      rate: float,
      *,
      broadcast_dims: Sequence[int] = (),
      inverted: bool = True,
      bits: int | None = None,
      **kwargs: Any,
  ):
    super().__init__(**kwargs)
    self.rate = self._rate_attribute(rate)
    self.broadcast_dims = tuple(broadcast_dims)
    self.inverted = inverted
    self.bits = bits

  def __call__(self, x, *, deterministic=None, rngs=None, rate=None) -> jax.Array:
    rate = value_of(self.rate) if rate is None else rate
    if not self._sampling(deterministic):
      return ops.dropout(
          None, x, rate, deterministic=True, inverted=self.inverted, bits=self.bits
      )
    return ops.dropout(
        self._key(rngs), x, rate, broadcast_dims=self.broadcast_dims, inverted=self.inverted,
        bits=self.bits,
    )


class SpatialDropout(StochasticLayer):
  """`dropjax.spatial_dropout` as a layer: drops whole feature maps."""

  def __init__(self, rate: float, *, channel_axis: int = -1, bits: int | None = None, **kwargs):
    super().__init__(**kwargs)
    self.rate = self._rate_attribute(rate)
    self.channel_axis, self.bits = channel_axis, bits

  def __call__(self, x, *, deterministic=None, rngs=None, rate=None) -> jax.Array:
    if not self._sampling(deterministic):
      return x
    rate = value_of(self.rate) if rate is None else rate
    return ops.spatial_dropout(
        self._key(rngs), x, rate, channel_axis=self.channel_axis, bits=self.bits
    )


class DropBlock(StochasticLayer):
  """`dropjax.dropblock` as a layer: drops contiguous square blocks of feature maps.

  One mask per channel by default, as in Ghiasi et al.'s Algorithm 1 (see
  `dropjax.dropblock` for the choice).
  """

  def __init__(
      self,
      rate: float,
      *,
      block_size: int = 7,
      data_format: str = "NHWC",
      shared_across_channels: bool = False,
      bits: int | None = None,
      **kwargs,
  ):
    super().__init__(**kwargs)
    self.rate = self._rate_attribute(rate)
    self.block_size, self.data_format = block_size, data_format
    self.shared_across_channels, self.bits = shared_across_channels, bits

  def __call__(self, x, *, deterministic=None, rngs=None, rate=None) -> jax.Array:
    if not self._sampling(deterministic):
      return x
    rate = value_of(self.rate) if rate is None else rate
    return ops.dropblock(
        self._key(rngs), x, rate, block_size=self.block_size, data_format=self.data_format,
        shared_across_channels=self.shared_across_channels, bits=self.bits,
    )


class GaussianDropout(StochasticLayer):
  """`dropjax.gaussian_dropout` as a layer: multiplicative N(1, rate/(1-rate)) noise."""

  def __init__(self, rate: float, **kwargs):
    super().__init__(**kwargs)
    self.rate = self._rate_attribute(rate)

  def __call__(self, x, *, deterministic=None, rngs=None, rate=None) -> jax.Array:
    if not self._sampling(deterministic):
      return x
    return ops.gaussian_dropout(self._key(rngs), x, value_of(self.rate) if rate is None else rate)


class AlphaDropout(StochasticLayer):
  """`dropjax.alpha_dropout` as a layer, for SELU networks."""

  def __init__(self, rate: float, *, bits: int | None = None, **kwargs):
    super().__init__(**kwargs)
    self.rate, self.bits = self._rate_attribute(rate), bits

  def __call__(self, x, *, deterministic=None, rngs=None, rate=None) -> jax.Array:
    if not self._sampling(deterministic):
      return x
    rate = value_of(self.rate) if rate is None else rate
    return ops.alpha_dropout(self._key(rngs), x, rate, bits=self.bits)


class DropPath(StochasticLayer):
  """`dropjax.drop_path` as a layer: stochastic depth on a residual branch."""

  def __init__(self, rate: float, *, bits: int | None = None, **kwargs):
    super().__init__(**kwargs)
    self.rate, self.bits = self._rate_attribute(rate), bits

  def __call__(self, x, *, deterministic=None, rngs=None, rate=None) -> jax.Array:
    if not self._sampling(deterministic):
      return x
    rate = value_of(self.rate) if rate is None else rate
    return ops.drop_path(self._key(rngs), x, rate, bits=self.bits)


class DropConnectLinear(StochasticLayer):
  """A dense layer whose kernel and bias get DropConnect masks (`dropjax.dropconnect_dense`).

  Args:
    in_features, out_features: the layer's sizes.
    rate: the dropout probability of each weight.
    use_bias: whether to add a (masked) bias.
    per_example: one mask per example instead of one per batch.
    rngs: ``nnx.Rngs`` with a ``params`` stream (initialisation) and a ``dropout`` stream.
  """

  def __init__(
      self,
      in_features: int,
      out_features: int,
      rate: float,
      *,
      use_bias: bool = True,
      per_example: bool = False,
      bits: int | None = None,
      kernel_init: nnx.Initializer = _LECUN_NORMAL,
      rngs: nnx.Rngs,
      **kwargs,
  ):
    super().__init__(rngs=rngs, **kwargs)
    self.rate = self._rate_attribute(rate)
    self.per_example, self.bits = per_example, bits
    self.kernel = nnx.Param(kernel_init(rngs.params(), (in_features, out_features)))
    self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else nnx.data(None)

  def __call__(self, x, *, deterministic=None, rngs=None, rate=None) -> jax.Array:
    bias = None if self.bias is None else self.bias[...]
    sampling = self._sampling(deterministic)
    return ops.dropconnect_dense(
        self._key(rngs) if sampling else None, x, self.kernel[...],
        value_of(self.rate) if rate is None else rate, bias=bias, per_example=self.per_example,
        deterministic=not sampling, bits=self.bits,
    )


class ConcreteDropout(StochasticLayer):
  """Concrete dropout with a learnable rate (`dropjax.concrete_dropout`).

  The rate is ``sigmoid(rate_logit)`` with ``rate_logit`` an ``nnx.Param`` trained with the
  rest of the model; add `regularizer` of the weights this layer feeds to the loss.

  Args:
    init_rate: the initial rate (0.1 in the reference code).
    temperature: the relaxation temperature.
    spatial: drop whole feature maps (`spatial_concrete_dropout`); for conv layers.
    channel_axis: the channel axis when ``spatial``.
    broadcast_dims: axes sharing the mask when not ``spatial``.
  """

  def __init__(
      self,
      *,
      init_rate: float = 0.1,
      temperature: float = concrete.DEFAULT_TEMPERATURE,
      spatial: bool = False,
      channel_axis: int = -1,
      broadcast_dims: Sequence[int] = (),
      **kwargs,
  ):
    super().__init__(**kwargs)
    value = check_rate(init_rate, "init_rate")
    if value is not None and not 0 < float(value) < 1:
      raise ValueError(f"`init_rate` must be strictly between 0 and 1; got {init_rate}.")
    self.rate_logit = nnx.Param(jnp.asarray(np.log(init_rate) - np.log1p(-init_rate), jnp.float32))
    self.temperature, self.spatial, self.channel_axis = temperature, spatial, channel_axis
    self.broadcast_dims = tuple(broadcast_dims)

  @property
  def rate(self) -> jax.Array:
    return jax.nn.sigmoid(self.rate_logit[...])

  def __call__(self, x, *, deterministic=None, rngs=None) -> jax.Array:
    if not self._sampling(deterministic):
      return x
    if self.spatial:
      return concrete.spatial_concrete_dropout(
          self._key(rngs), x, self.rate, channel_axis=self.channel_axis,
          temperature=self.temperature,
      )
    return concrete.concrete_dropout(
        self._key(rngs), x, self.rate, temperature=self.temperature,
        broadcast_dims=self.broadcast_dims,
    )

  def regularizer(
      self,
      weights: Any,
      *,
      input_dim: int,
      weight_regularizer: float,
      dropout_regularizer: float,
  ) -> jax.Array:
    """`dropjax.concrete_dropout_regularizer` at this layer's current rate."""
    return concrete.concrete_dropout_regularizer(
        weights, self.rate, input_dim=input_dim, weight_regularizer=weight_regularizer,
        dropout_regularizer=dropout_regularizer,
    )


class ConcreteDropoutWrapper(nnx.Module):
  """Concrete dropout on the input of ``layer``, with the layer's penalty (Gal et al. 2017).

  The reference implementation's shape (``ConcreteDropout(Dense(...))`` in
  yaringal/ConcreteDropout): the wrapper knows the weights its dropout feeds, so its
  `penalty` needs nothing from the caller and `dropjax.penalties.collect_penalties` finds
  it in any model. The penalty uses ``layer.kernel`` and ``input_dim = kernel.shape[-2]``
  (input features of a dense kernel, input channels of a conv kernel).

  Args:
    layer: a module with a ``kernel`` parameter (``nnx.Linear``, ``nnx.Conv``, ...).
    weight_regularizer: ``l**2 / (tau N)`` for N training points (``l**2 / N`` for a
      cross-entropy loss).
    dropout_regularizer: ``2 / (tau N)`` (``1 / N`` for a cross-entropy loss).
    init_rate: the initial rate.
    temperature: the relaxation temperature.
    spatial: drop whole feature maps (for convolutions).
    channel_axis: the channel axis when ``spatial``.
    rngs: ``nnx.Rngs`` (a ``dropout`` stream) or None to pass a key at call time.

  Example:
    >>> from flax import nnx
    >>> import jax.numpy as jnp, dropjax
    >>> fc = dropjax.layers.ConcreteDropoutWrapper(
    ...     nnx.Linear(4, 2, rngs=nnx.Rngs(0)), weight_regularizer=1e-6,
    ...     dropout_regularizer=1e-5, rngs=nnx.Rngs(1))
    >>> fc(jnp.ones((3, 4))).shape, fc.penalty().shape
    ((3, 2), ())
  """

  def __init__(
      self,
      layer: nnx.Module,
      *,
      weight_regularizer: float,
      dropout_regularizer: float,
      init_rate: float = 0.1,
      temperature: float = concrete.DEFAULT_TEMPERATURE,
      spatial: bool = False,
      channel_axis: int = -1,
      rngs: nnx.Rngs | nnx.RngStream | None = None,
  ):
    if not isinstance(getattr(layer, "kernel", None), nnx.Param):
      raise TypeError(f"`layer` must have a `kernel` parameter (nnx.Linear, nnx.Conv); got "
                      f"{type(layer).__name__}.")
    for name, value in (("weight_regularizer", weight_regularizer),
                        ("dropout_regularizer", dropout_regularizer)):
      if not value >= 0:
        raise ValueError(f"`{name}` must be >= 0; got {value!r}.")
    self.dropout = ConcreteDropout(init_rate=init_rate, temperature=temperature,
                                   spatial=spatial, channel_axis=channel_axis, rngs=rngs)
    self.layer = layer
    self.weight_regularizer = float(weight_regularizer)
    self.dropout_regularizer = float(dropout_regularizer)

  def __call__(self, x, *, deterministic=None, rngs=None) -> jax.Array:
    return self.layer(self.dropout(x, deterministic=deterministic, rngs=rngs))

  @property
  def rate(self) -> jax.Array:
    return self.dropout.rate

  def penalty(self) -> jax.Array:
    """The Concrete-dropout penalty of this layer, to add to the loss."""
    kernel = self.layer.kernel[...]
    return self.dropout.regularizer(
        kernel, input_dim=int(kernel.shape[-2]), weight_regularizer=self.weight_regularizer,
        dropout_regularizer=self.dropout_regularizer,
    )


class LSTM(StochasticLayer):
  """An LSTM over ``(batch, time, features)`` with variational or naive dropout.

  ``mode="variational"`` (Gal & Ghahramani 2016): one mask per sequence on the inputs and
  one on the recurrent state, drawn once *outside* `jax.lax.scan` and reused at every
  step. ``mode="naive"``: a fresh mask at every step on both, for comparison (also drawn
  outside the scan, as ``(time, batch, ...)`` tensors).

  Args:
    in_features, hidden_features: the sizes.
    input_rate: dropout rate on the inputs x_t.
    state_rate: dropout rate on the recurrent state h_{t-1}.
    mode: ``"variational"`` or ``"naive"``.
    rngs: ``nnx.Rngs`` with ``params`` and ``dropout`` streams.
  """

  def __init__(
      self,
      in_features: int,
      hidden_features: int,
      *,
      input_rate: float = 0.0,
      state_rate: float = 0.0,
      mode: str = "variational",
      rngs: nnx.Rngs,
      **kwargs,
  ):
    super().__init__(rngs=rngs, **kwargs)
    if mode not in ("variational", "naive"):
      raise ValueError(f'`mode` must be "variational" or "naive"; got {mode!r}.')
    self.input_rate = self._rate_attribute(input_rate, "input_rate")
    self.state_rate = self._rate_attribute(state_rate, "state_rate")
    self.mode = mode
    self.hidden_features = hidden_features
    init = _LECUN_NORMAL
    self.input_kernel = nnx.Param(init(rngs.params(), (in_features, 4 * hidden_features)))
    self.state_kernel = nnx.Param(
        nnx.initializers.orthogonal()(rngs.params(), (hidden_features, 4 * hidden_features))
    )
    # Forget-gate bias 1 (Jozefowicz et al. 2015).
    bias = np.zeros(4 * hidden_features, np.float32)
    bias[hidden_features : 2 * hidden_features] = 1.0
    self.bias = nnx.Param(jnp.asarray(bias))

  def __call__(self, xs, *, deterministic=None, rngs=None) -> jax.Array:
    xs = jnp.asarray(xs)
    if xs.ndim != 3:
      raise ValueError(f"LSTM expects `xs` of shape (batch, time, features); got {xs.shape}.")
    batch, steps, features = xs.shape
    hidden = self.hidden_features
    if self._sampling(deterministic):
      key_x, key_h = jax.random.split(self._key(rngs))
      lead = () if self.mode == "variational" else (steps,)
      mask_x = ops.dropout_mask(key_x, (*lead, batch, features), value_of(self.input_rate),
                                dtype=xs.dtype)
      mask_h = ops.dropout_mask(key_h, (*lead, batch, hidden), value_of(self.state_rate),
                                dtype=xs.dtype)
    else:
      mask_x = jnp.ones((batch, features), xs.dtype)
      mask_h = jnp.ones((batch, hidden), xs.dtype)
    per_step = mask_x.ndim == 3
    wx, wh, b = self.input_kernel[...], self.state_kernel[...], self.bias[...]

    def step(carry, inputs):
      h, c = carry
      x_t, mx, mh = inputs
      gates = (x_t * mx) @ wx + (h * mh) @ wh + b
      i, f, g, o = jnp.split(gates, 4, axis=-1)
      c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
      h = jax.nn.sigmoid(o) * jnp.tanh(c)
      return (h, c), h

    time_major = jnp.swapaxes(xs, 0, 1)
    if per_step:
      scanned = (time_major, mask_x, mask_h)
      body = step
    else:
      scanned = time_major
      body = lambda carry, x_t: step(carry, (x_t, mask_x, mask_h))
    zeros = jnp.zeros((batch, hidden), xs.dtype)
    _, hs = jax.lax.scan(body, (zeros, zeros), scanned)
    return jnp.swapaxes(hs, 0, 1)


class Frozen(nnx.Variable):
  """A weight that training leaves alone: `dropjax.train` differentiates ``nnx.Param`` only,
  and optimizers built with ``wrt=nnx.Param`` skip it."""


def freeze(model: _M, *, keep: Callable[[tuple[Any, ...]], bool] = lambda path: False) -> _M:
  """Turns every ``nnx.Param`` of ``model`` into `Frozen`, in place, except under ``keep``.

  Args:
    model: an NNX model.
    keep: takes a module's path (attribute names and list indices, as
      ``nnx.iter_modules`` gives it) and says whether that module's parameters stay
      trainable, e.g. ``lambda path: path[:1] == ("head",)``.

  Returns:
    ``model``.
  """
  for path, module in nnx.iter_modules(model):
    if keep(tuple(path)):
      continue
    for name, value in list(vars(module).items()):
      if type(value) is nnx.Param:
        setattr(module, name, Frozen(value[...]))
  return model


def _check_lora(rank: Any, rate: Any, alpha: Any) -> None:
  check_positive_int(rank, "rank")
  check_rate(rate, "rate")
  if alpha is not None and (isinstance(alpha, bool)
                            or not isinstance(alpha, int | float | np.integer | np.floating)
                            or not np.isfinite(alpha) or alpha <= 0):
    raise ValueError(f"`alpha` must be a positive number or None (= rank); got {alpha!r}.")


class LoRALinear(nnx.Module):
  """A frozen ``nnx.Linear`` plus a trainable low-rank update with dropout on its input.

  ``base(x) + (alpha / rank) * dropout(x) @ lora_a @ lora_b``, as in PEFT's ``lora.Linear``:
  ``lora_dropout`` drops the update's input only, so the frozen path sees ``x`` intact;
  ``lora_a`` starts ``U(-1/sqrt(in), 1/sqrt(in))`` (PyTorch's Kaiming-uniform with
  ``a = sqrt(5)``) and ``lora_b`` at 0, so the wrapped layer starts as ``base``.

  Args:
    base: the layer to adapt; its kernel and bias become `Frozen`.
    rank: the update's rank r >= 1.
    rate: ``lora_dropout``, the dropout probability (not the keep rate) on the update's
      input; may be an array (traced under ``jax.vmap``).
    alpha: the update's scale numerator; None for ``rank`` (a scale of 1).
    rngs: ``nnx.Rngs`` with ``params`` and ``dropout`` streams.

  References:
    Hu et al. "LoRA: low-rank adaptation of large language models." ICLR 2022.
  """

  def __init__(self, base: nnx.Linear, rank: int, *, rate: float = 0.0,
               alpha: float | None = None, rngs: nnx.Rngs):
    if not isinstance(base, nnx.Linear):
      raise TypeError(f"`base` must be an nnx.Linear; got {type(base).__name__}.")
    _check_lora(rank, rate, alpha)
    self.base = freeze(base)
    in_features, out_features = base.in_features, base.out_features
    bound = 1.0 / np.sqrt(in_features)
    dtype = base.kernel[...].dtype
    self.lora_a = nnx.Param(jax.random.uniform(rngs.params(), (in_features, rank), dtype,
                                               -bound, bound))
    self.lora_b = nnx.Param(jnp.zeros((rank, out_features), dtype))
    self.scale = float(alpha if alpha is not None else rank) / rank
    self.drop = Dropout(rate, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    update = self.drop(x) @ self.lora_a[...] @ self.lora_b[...]
    return self.base(x) + self.scale * update


def add_lora(model: _M, targets: Sequence[str], *, rank: int, rate: float = 0.0,
             alpha: float | None = None, trainable: Sequence[str] = (),
             rngs: nnx.Rngs) -> _M:
  """Freezes ``model`` and wraps its ``nnx.Linear`` layers named in ``targets`` in LoRA.

  Args:
    model: an NNX model, e.g. a pretrained `dropjax.models.TransformerClassifier`.
    targets: attribute names of the linear layers to adapt, wherever they sit (e.g.
      ``("qkv", "out")`` in every block); each must match at least one ``nnx.Linear``.
    rank, rate, alpha: see `LoRALinear` (``rate`` is ``lora_dropout``).
    trainable: attribute names of modules that stay trainable in full (PEFT's
      ``modules_to_save``), e.g. a new task's ``("head",)``.
    rngs: ``nnx.Rngs`` for the new factors and the LoRA dropout.

  Returns:
    ``model``: only the LoRA factors and the ``trainable`` modules are ``nnx.Param``.

  Example:
    >>> from flax import nnx
    >>> import dropjax
    >>> from dropjax.models import TransformerClassifier
    >>> model = TransformerClassifier(28, 10, max_length=28, rngs=nnx.Rngs(0))
    >>> model = dropjax.layers.add_lora(model, ("qkv", "out"), rank=4, rate=0.05,
    ...                                 trainable=("head",), rngs=nnx.Rngs(1))
    >>> sorted({path[-1] for path, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))})
    ['bias', 'kernel', 'lora_a', 'lora_b']
  """
  targets, trainable = tuple(targets), tuple(trainable)
  _check_lora(rank, rate, alpha)
  if not targets:
    raise ValueError("`targets` must name at least one nnx.Linear attribute, e.g. ('qkv',).")
  found = {name: [] for name in targets}
  for path, module in nnx.iter_modules(model):
    if path and path[-1] in found and isinstance(module, nnx.Linear):
      found[path[-1]].append(tuple(path))
  missing = [name for name, paths in found.items() if not paths]
  if missing:
    linears = sorted({str(p[-1]) for p, m in nnx.iter_modules(model)
                      if p and isinstance(m, nnx.Linear)})
    raise ValueError(f"`targets` {tuple(missing)} match no nnx.Linear of "
                     f"{type(model).__name__}; its linear layers are named {linears}.")
  unknown = [name for name in trainable
             if not any(p and p[-1] == name for p, _ in nnx.iter_modules(model))]
  if unknown:
    raise ValueError(f"`trainable` {tuple(unknown)} match no module of {type(model).__name__}.")
  inside = sorted({"/".join(map(str, path)) for paths in found.values() for path in paths
                   if any(name in path for name in trainable)})
  if inside:
    raise ValueError(f"LoRA `targets` {inside} sit inside a `trainable` module {trainable}: "
                     "a wrapped layer's base is frozen, so it cannot also train in full.")
  # The new LoRA dropout layers take the model's current mode (train, eval or MC).
  modes = [(m.deterministic, m.mc) for _, m in nnx.iter_modules(model)
           if isinstance(m, StochasticLayer)]
  freeze(model, keep=lambda path: any(name in path for name in trainable))
  for paths in found.values():
    for path in paths:
      base = model
      for part in path:
        base = base[part] if isinstance(part, int) else getattr(base, part)
      adapted = LoRALinear(base, rank, rate=rate, alpha=alpha, rngs=rngs)
      if modes and len(set(modes)) == 1:
        adapted.drop.deterministic, adapted.drop.mc = modes[0]
      _replace_at(model, path, adapted)
  return model
