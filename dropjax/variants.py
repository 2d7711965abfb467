"""The registry of dropout variants: one entry says everything the library needs to know.

A variant is an op (``op(key, x, rate, **kwargs) -> y``, in `dropjax.ops` or
`dropjax.concrete`), a layer (a `dropjax.layers.StochasticLayer` whose
``layer(x, rngs=key)`` equals the op for the same key) and one `Variant` entry, added with
`register`. The entry says where the variant applies (`PLACEMENTS`), how to build its layer
from a rate, its default rates before dense layers and convolutions, and the inputs the
contract tests run it on. Everything else reads the registry:

* `dropjax.models` builds each position's layer with `build` (``MLP``, ``ConvNet``);
* the variant comparison runs every variant of `model_variants` at its default rates;
* ``tests/test_ops_contract.py`` and ``tests/test_layers.py`` run the op and layer
  contracts on every entry's examples, and ``tests/test_variants_registry.py`` fails when
  a public op or layer is not registered.

Example:
  >>> from flax import nnx
  >>> from dropjax import variants
  >>> variants.model_variants()[:3]
  ('none', 'dropout', 'spatial')
  >>> layer = variants.build("spatial", variants.FEATURE_MAPS, 0.1, rngs=nnx.Rngs(0))
  >>> type(layer).__name__
  'SpatialDropout'
  >>> type(variants.build("spatial", variants.DENSE_INPUT, 0.1, rngs=nnx.Rngs(0))).__name__
  'Dropout'
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from dropjax import concrete, layers, ops
from dropjax._validation import concrete_value

# Where a variant's layer goes in a model.
DENSE_INPUT = "dense_input"  # on the input of a dense layer
FEATURE_MAPS = "feature_maps"  # on the (NHWC) input of a convolution
WEIGHTS = "weights"  # replaces a dense layer: the masks act on its weights
RESIDUAL = "residual"  # on a residual branch, before the skip connection is added
RECURRENT = "recurrent"  # the recurrent layer itself: masks on its inputs and state
PLACEMENTS = (DENSE_INPUT, FEATURE_MAPS, WEIGHTS, RESIDUAL, RECURRENT)
# The keywords a model passes to every layer it builds at a placement (the layer's sizes).
PLACEMENT_KEYWORDS: Mapping[str, tuple[str, ...]] = types.MappingProxyType({
    DENSE_INPUT: (), FEATURE_MAPS: (), WEIGHTS: ("in_features", "out_features"),
    RESIDUAL: (), RECURRENT: ("in_features", "hidden_features"),
})

Op = Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class Example:
  """An input the contract tests run an op or a layer on.

  Attributes:
    shape: the input's shape.
    kwargs: keywords of the op (and of the layer, unless ``layer_kwargs`` is given).
    name: a suffix for the test id (``"dropout_bits8"``).
    op: another op of the variant to run instead of `Variant.op` (a pytree form, a
      spatial form).
    layer_kwargs: the layer's keywords where they differ from the op's (sizes,
      ``spatial=True``).
    inference: ``(x, rate) -> y``, the op's output with ``deterministic=True``, where it is
      not ``x`` (classic dropout scales by the keep rate).
  """

  shape: tuple[int, ...]
  kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  name: str = ""
  op: Op | None = None
  layer_kwargs: Mapping[str, Any] | None = None
  inference: Callable[[jax.Array, float], jax.Array] | None = None


@dataclasses.dataclass(frozen=True)
class Variant:
  """One dropout variant: its op, its layer, where it applies and its default rates.

  Attributes:
    name: the name models and studies use (``variant="dropblock"``).
    op: the functional op ``op(key, x, rate, **kwargs)``; None for no dropout.
    layer: the layer class.
    make_layer: ``(rate, *, rngs, **kwargs) -> layer``; None for
      ``layer(rate, rngs=rngs, **kwargs)``.
    placements: where the variant applies (keys of `PLACEMENTS`), each with the layer
      keywords used there. A model asks `build` for a layer at a placement and gets
      none where the variant does not apply.
    model_options: model settings the layer takes (e.g. ``"block_size"``); models pass
      them to `build`.
    dense_rate: the default rate before dense layers; None if the variant has no rate
      there to set (with ``conv_rate`` None too, it does not plug into the models).
    conv_rate: the default rate of the feature-map positions (for residual variants: of
      the last block).
    dense_equivalent: the variant placed before dense layers by a variant that does not
      apply there (spatial dropout and DropBlock act as standard dropout).
    activation: the activation models use with this variant; None for ReLU.
    learns_rate: the rate is trained (the default rates are initial values, not tuned).
    related_ops: further public ops of the variant (a pytree form, a mask builder).
    op_examples: inputs of the op contract.
    layer_examples: inputs of the layer contract.
    reference: ``(layer, key, x, **kwargs) -> y``, what the layer must return for
      ``layer(x, rngs=key)``; None for ``op(key, x, layer.rate, **kwargs)``.
    notes: settings pinned for the committed studies, and anything else to know.
  """

  name: str
  op: Op | None
  layer: type[nnx.Module]
  make_layer: Callable[..., nnx.Module] | None = None
  placements: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
  model_options: tuple[str, ...] = ()
  dense_rate: float | None = None
  conv_rate: float | None = None
  dense_equivalent: str | None = None
  activation: Callable[[jax.Array], jax.Array] | None = None
  learns_rate: bool = False
  related_ops: tuple[Op, ...] = ()
  op_examples: tuple[Example, ...] = ()
  layer_examples: tuple[Example, ...] = ()
  reference: Callable[..., jax.Array] | None = None
  notes: str = ""

  @property
  def in_models(self) -> bool:
    """Whether the variant plugs into the models (it has both default rates)."""
    return self.dense_rate is not None and self.conv_rate is not None

  def build_layer(self, rate: Any, *, rngs: nnx.Rngs, **kwargs: Any) -> nnx.Module:
    """The variant's layer at ``rate``."""
    if self.make_layer is not None:
      return self.make_layer(rate, rngs=rngs, **kwargs)
    return self.layer(rate, rngs=rngs, **kwargs)

  def layer_reference(self, layer: nnx.Module, key: jax.Array, x: jax.Array,
                      example: Example) -> jax.Array:
    """What ``layer(x, rngs=key)`` must equal: the op at the layer's rate, or `reference`."""
    if self.reference is not None:
      return self.reference(layer, key, x, **example.kwargs)
    op = example.op or self.op
    return op(key, x, layers.value_of(layer.rate), **example.kwargs)


_REGISTRY: dict[str, Variant] = {}
REGISTRY: Mapping[str, Variant] = types.MappingProxyType(_REGISTRY)
"""Every registered variant by name, in registration order (read-only; use `register`)."""


def _check_rate_default(value: Any, name: str) -> None:
  if value is not None and not (isinstance(value, (int, float)) and 0.0 <= value < 1.0):
    raise ValueError(f"`{name}` must be None or a rate in [0, 1); got {value!r}.")


def register(variant: Variant) -> Variant:
  """Adds ``variant`` to the registry; models, studies and contract tests then see it.

  Args:
    variant: the entry. Its name must be new, its placements among `PLACEMENTS`, and a
      variant with an op (or a dropjax layer) needs op (layer) examples for the contracts.

  Returns:
    ``variant``.

  Raises:
    ValueError: a name already registered, an unknown placement, a dense equivalent that
      is not registered or does not apply to dense inputs, a default rate outside [0, 1),
      or missing contract examples.

  Example:
    >>> from dropjax import layers, ops, variants
    >>> entry = variants.register(variants.Variant(
    ...     name="my_dropout", op=ops.dropout, layer=layers.Dropout,
    ...     placements={variants.DENSE_INPUT: {}}, dense_rate=0.3, conv_rate=0.0,
    ...     op_examples=(variants.Example((4, 3)),),
    ...     layer_examples=(variants.Example((4, 3)),)))
    >>> "my_dropout" in variants.model_variants()
    True
    >>> _ = variants.unregister("my_dropout")
  """
  if not isinstance(variant, Variant):
    raise TypeError(f"`variant` must be a dropjax.variants.Variant; got {type(variant).__name__}.")
  if not isinstance(variant.name, str) or not variant.name:
    raise ValueError(f"`name` must be a non-empty string; got {variant.name!r}.")
  if variant.name in _REGISTRY:
    raise ValueError(f"A variant named {variant.name!r} is already registered; registered: "
                     f"{names()}. Pick another name or `unregister` it first.")
  unknown = [p for p in variant.placements if p not in PLACEMENTS]
  if unknown:
    raise ValueError(f"`placements` of {variant.name!r} has {unknown}; allowed placements: "
                     f"{PLACEMENTS}.")
  if variant.dense_equivalent is not None:
    equivalent = _REGISTRY.get(variant.dense_equivalent)
    if equivalent is None or DENSE_INPUT not in equivalent.placements:
      raise ValueError(f"`dense_equivalent` of {variant.name!r} must name a registered variant "
                       f"that applies to {DENSE_INPUT!r}; got {variant.dense_equivalent!r}.")
  _check_rate_default(variant.dense_rate, "dense_rate")
  _check_rate_default(variant.conv_rate, "conv_rate")
  if variant.op is not None and not variant.op_examples:
    raise ValueError(f"Variant {variant.name!r} has an op but no `op_examples`: the op "
                     "contract needs at least one input shape.")
  if issubclass(variant.layer, layers.StochasticLayer) and not variant.layer_examples:
    raise ValueError(f"Variant {variant.name!r} has a dropjax layer but no `layer_examples`: "
                     "the layer contract needs at least one input shape.")
  _REGISTRY[variant.name] = variant
  return variant


def unregister(name: str) -> Variant:
  """Removes variant ``name`` from the registry and returns its entry."""
  get(name)
  return _REGISTRY.pop(name)


def get(name: str) -> Variant:
  """The entry of variant ``name``.

  Raises:
    ValueError: ``name`` is not registered (the message lists the registered names).
  """
  try:
    return _REGISTRY[name]
  except (KeyError, TypeError):
    raise ValueError(f"`variant` must be one of {names()}; got {name!r}.") from None


def names() -> tuple[str, ...]:
  """Every registered variant's name, in registration order."""
  return tuple(_REGISTRY)


def model_variants() -> tuple[str, ...]:
  """The variants that plug into the models: those with default dense and conv rates.

  Example:
    >>> from dropjax import variants
    >>> "dropblock" in variants.model_variants(), "variational" in variants.model_variants()
    (True, False)
  """
  return tuple(name for name, v in _REGISTRY.items() if v.in_models)


def applies(name: str, placement: str) -> bool:
  """Whether variant ``name`` puts a layer at ``placement`` (its own, not an equivalent's)."""
  _check_placement(placement)
  return placement in get(name).placements


def _check_placement(placement: str) -> None:
  if placement not in PLACEMENTS:
    raise ValueError(f"`placement` must be one of {PLACEMENTS}; got {placement!r}.")


def _is_zero(rate: Any) -> bool:
  """True only for a rate known to be 0; a traced rate always gets a layer."""
  value = concrete_value(rate)
  return value is not None and bool((value == 0).all())


def build(name: str, placement: str, rate: Any, *, rngs: nnx.Rngs,
          **options: Any) -> nnx.Module | None:
  """The layer variant ``name`` puts at ``placement`` with ``rate``, or None for none.

  None where the variant does not apply (before dense layers, a variant's
  ``dense_equivalent`` applies instead) or where the rate is a concrete 0; a traced rate
  always gets a layer, so one compiled program serves every rate.

  Args:
    name: a registered variant.
    placement: one of `PLACEMENTS`.
    rate: the rate (for a learned rate, its initial value); float, array or traced.
    rngs: the model's ``nnx.Rngs``; a stochastic layer forks its ``dropout`` stream.
    **options: the placement's `PLACEMENT_KEYWORDS` (required) and model settings such
      as ``block_size``; a variant takes the ones in its ``model_options``.

  Returns:
    The layer, or None.

  Raises:
    ValueError: an unknown variant or placement, or a keyword the layer needs is missing.

  Example:
    >>> from flax import nnx
    >>> from dropjax import variants
    >>> block = variants.build("dropblock", variants.FEATURE_MAPS, 0.1, block_size=3,
    ...                        rngs=nnx.Rngs(0))
    >>> block.block_size, block.shared_across_channels
    (3, True)
    >>> variants.build("drop_path", variants.DENSE_INPUT, 0.1, rngs=nnx.Rngs(0)) is None
    True
  """
  _check_placement(placement)
  variant = get(name)
  if placement == DENSE_INPUT and placement not in variant.placements and (
      variant.dense_equivalent is not None):
    variant = get(variant.dense_equivalent)
  if placement not in variant.placements or _is_zero(rate):
    return None
  wanted = (*PLACEMENT_KEYWORDS[placement], *variant.model_options)
  missing = [k for k in wanted if k not in options]
  if missing:
    raise ValueError(f"Variant {variant.name!r} at {placement!r} needs the keywords {missing}; "
                     f"got {sorted(options)}.")
  kwargs = {k: options[k] for k in wanted}
  return variant.build_layer(rate, rngs=rngs, **variant.placements[placement], **kwargs)


def registered_ops() -> tuple[Op, ...]:
  """Every op the registry knows: each entry's op, related ops and example ops."""
  found: list[Op] = []
  for v in _REGISTRY.values():
    for op in (v.op, *v.related_ops, *(e.op for e in v.op_examples + v.layer_examples)):
      if op is not None and op not in found:
        found.append(op)
  return tuple(found)


def registered_layers() -> tuple[type[nnx.Module], ...]:
  """Every layer class the registry knows, in registration order."""
  return tuple(dict.fromkeys(v.layer for v in _REGISTRY.values()))


# --- What the contracts need beyond "op(key, x, rate)" ------------------------------------


def _dense_through_identity(key, x, rate, **kwargs):
  """`dropjax.dropconnect_dense` through an identity kernel, so that the op contract (rate 0
  is the identity; the output has the shape and dtype of ``x``) applies unchanged."""
  return ops.dropconnect_dense(key, x, jnp.eye(x.shape[-1], dtype=x.dtype), rate, **kwargs)


def _dropconnect_linear_reference(layer, key, x, **kwargs):
  bias = None if layer.bias is None else layer.bias[...]
  return ops.dropconnect_dense(key, x, layer.kernel[...], layers.value_of(layer.rate),
                               bias=bias, **kwargs)


def _lstm_reference(layer, key, xs, **unused):
  """The LSTM unrolled in Python with the masks its docstring promises: one key split into
  input and state keys, `dropjax.dropout_mask` of ``(batch, features)`` per sequence
  (variational) or ``(time, batch, features)`` (naive)."""
  batch, steps, features = xs.shape
  hidden = layer.hidden_features
  key_x, key_h = jax.random.split(key)
  lead = () if layer.mode == "variational" else (steps,)
  mask_x = ops.dropout_mask(key_x, (*lead, batch, features), layers.value_of(layer.input_rate),
                            dtype=xs.dtype)
  mask_h = ops.dropout_mask(key_h, (*lead, batch, hidden), layers.value_of(layer.state_rate),
                            dtype=xs.dtype)
  wx, wh, b = layer.input_kernel[...], layer.state_kernel[...], layer.bias[...]
  h = c = jnp.zeros((batch, hidden), xs.dtype)
  outputs = []
  for t in range(steps):
    mx, mh = (mask_x[t], mask_h[t]) if lead else (mask_x, mask_h)
    i, f, g, o = jnp.split((xs[:, t] * mx) @ wx + (h * mh) @ wh + b, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    outputs.append(h)
  return jnp.stack(outputs, axis=1)


# --- The built-in variants, in the order of the variant comparison ------------------------

register(Variant(
    name="none", op=None, layer=layers.Identity, dense_rate=0.0, conv_rate=0.0,
    notes="No dropout anywhere: the baseline of a variant comparison.",
))
register(Variant(
    name="dropout", op=ops.dropout, layer=layers.Dropout,
    placements={DENSE_INPUT: {}, FEATURE_MAPS: {}}, dense_rate=0.5, conv_rate=0.1,
    op_examples=(
        Example((8, 6)),
        Example((4, 5, 6), {"broadcast_dims": (1,)}, name="broadcast"),
        Example((8, 6), {"inverted": False}, name="classic",
                inference=lambda x, rate: x * (1.0 - rate)),
        Example((8, 6), {"bits": 8}, name="bits8"),
        Example((8, 6), {"bits": 32}, name="bits32"),
    ),
    layer_examples=(
        Example((4, 5, 6), {"broadcast_dims": (1,)}),
        Example((8, 6), {"inverted": False}, name="classic"),
    ),
))
register(Variant(
    name="spatial", op=ops.spatial_dropout, layer=layers.SpatialDropout,
    placements={FEATURE_MAPS: {}}, dense_equivalent="dropout", dense_rate=0.5, conv_rate=0.1,
    op_examples=(Example((2, 5, 5, 3)),), layer_examples=(Example((2, 5, 5, 4)),),
))
register(Variant(
    name="dropblock", op=ops.dropblock, layer=layers.DropBlock,
    # Pinned study setting: the models' DropBlock shares one mask across channels, as when
    # the committed variant-comparison results were computed, whatever the library default.
    placements={FEATURE_MAPS: {"shared_across_channels": True}}, model_options=("block_size",),
    dense_equivalent="dropout", dense_rate=0.5, conv_rate=0.1,
    op_examples=(
        Example((2, 8, 8, 3), {"block_size": 3}),
        Example((2, 3, 8, 8), {"block_size": 3, "data_format": "NCHW"}, name="nchw"),
        Example((2, 8, 8, 3), {"block_size": 3, "shared_across_channels": True},
                name="shared"),
        Example((2, 8, 8, 3), {"block_size": 3, "shared_across_channels": False},
                name="per_channel"),
    ),
    layer_examples=(
        Example((2, 8, 8, 4), {"block_size": 3}),
        Example((2, 8, 8, 4), {"block_size": 3, "shared_across_channels": False},
                name="per_channel"),
    ),
    notes="Models build DropBlock with shared_across_channels=True (pinned study setting).",
))
register(Variant(
    name="gaussian", op=ops.gaussian_dropout, layer=layers.GaussianDropout,
    placements={DENSE_INPUT: {}, FEATURE_MAPS: {}}, dense_rate=0.5, conv_rate=0.1,
    op_examples=(Example((8, 6)),), layer_examples=(Example((4, 6)),),
))
register(Variant(
    name="alpha", op=ops.alpha_dropout, layer=layers.AlphaDropout,
    placements={DENSE_INPUT: {}, FEATURE_MAPS: {}}, dense_rate=0.1, conv_rate=0.05,
    activation=jax.nn.selu,
    op_examples=(Example((8, 6)),), layer_examples=(Example((4, 6)),),
    notes="Mean and variance preserving only for SELU networks: models switch to SELU.",
))
register(Variant(
    name="dropconnect", op=ops.dropconnect, layer=layers.DropConnectLinear,
    make_layer=lambda rate, *, rngs, in_features, out_features, **kw: layers.DropConnectLinear(
        in_features, out_features, rate, rngs=rngs, **kw),
    placements={WEIGHTS: {}}, dense_rate=0.5, conv_rate=0.0,
    related_ops=(ops.dropconnect_dense,),
    op_examples=(
        Example((5, 7)),
        Example((8, 6), name="dense", op=_dense_through_identity),
        Example((8, 6), {"per_example": True}, name="dense_per_example",
                op=_dense_through_identity),
    ),
    layer_examples=(
        Example((10, 6), layer_kwargs={"in_features": 6, "out_features": 3}),
        Example((10, 6), {"per_example": True}, name="per_example",
                layer_kwargs={"in_features": 6, "out_features": 3, "per_example": True}),
    ),
    reference=_dropconnect_linear_reference,
))
register(Variant(
    name="concrete", op=concrete.concrete_dropout, layer=layers.ConcreteDropout,
    make_layer=lambda rate, *, rngs, **kw: layers.ConcreteDropout(init_rate=rate, rngs=rngs,
                                                                  **kw),
    placements={DENSE_INPUT: {}, FEATURE_MAPS: {"spatial": True}}, dense_rate=0.1,
    conv_rate=0.1, learns_rate=True, related_ops=(concrete.spatial_concrete_dropout,),
    op_examples=(
        Example((8, 6)),
        Example((2, 4, 4, 3), name="spatial", op=concrete.spatial_concrete_dropout),
    ),
    layer_examples=(
        Example((4, 6)),
        Example((2, 4, 4, 3), name="spatial", op=concrete.spatial_concrete_dropout,
                layer_kwargs={"spatial": True}),
    ),
    notes="The default rates are initial values; the rate is learned (Gal et al. 2017).",
))
register(Variant(
    name="drop_path", op=ops.drop_path, layer=layers.DropPath,
    placements={RESIDUAL: {}}, dense_rate=0.0, conv_rate=0.2,
    op_examples=(Example((6, 4, 3)),), layer_examples=(Example((8, 6)),),
    notes="conv_rate is the last residual block's rate; earlier blocks get l/L of it.",
))
register(Variant(
    name="variational", op=ops.variational_dropout, layer=layers.LSTM,
    make_layer=lambda rate, *, rngs, in_features, hidden_features, **kw: layers.LSTM(
        in_features, hidden_features, input_rate=rate, state_rate=rate, rngs=rngs, **kw),
    placements={RECURRENT: {}}, related_ops=(ops.dropout_mask,),
    op_examples=(Example((3, 7, 4)),),
    layer_examples=(
        Example((4, 6, 5), layer_kwargs={"in_features": 5, "hidden_features": 7}),
        Example((4, 6, 5), name="naive",
                layer_kwargs={"in_features": 5, "hidden_features": 7, "mode": "naive"}),
    ),
    reference=_lstm_reference,
    notes="Recurrent only (Gal & Ghahramani 2016): no dense or conv positions.",
))
