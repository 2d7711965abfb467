"""Argument checks shared by the ops: concrete values are validated, traced ones pass through."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np


def concrete_value(value: Any) -> np.ndarray | None:
  """Returns `value` as a float64 numpy array if it is known at trace time, else None."""
  if isinstance(value, jax.core.Tracer):
    return None
  try:
    return np.asarray(value, dtype=np.float64)
  except (TypeError, ValueError):
    return None


def check_rate(rate: Any, name: str = "rate") -> np.ndarray | None:
  """Validates a concrete rate in [0, 1]; returns its value (None when traced)."""
  value = concrete_value(rate)
  if value is None:
    return None
  if value.size == 0 or np.any(np.isnan(value)) or np.any(value < 0) or np.any(value > 1):
    what = (" (the drop probability, not the keep probability)" if "rate" in name
            else "")
    raise ValueError(f"`{name}` must be a probability in [0, 1]{what}; got {rate!r}.")
  return value


def normalize_axes(axes: int | Sequence[int], ndim: int, name: str) -> tuple[int, ...]:
  """Maps possibly negative axes into [0, ndim), rejecting out-of-range and repeated axes."""
  if isinstance(axes, (int, np.integer)) and not isinstance(axes, (bool, np.bool_)):
    axes = (int(axes),)
  if not isinstance(axes, Sequence) or not all(
      isinstance(a, (int, np.integer)) and not isinstance(a, (bool, np.bool_)) for a in axes):
    raise TypeError(f"`{name}` must be an int or a sequence of ints; got {axes!r}.")
  out = []
  for axis in axes:
    if not -ndim <= axis < ndim:
      raise ValueError(
          f"`{name}` contains axis {axis}, but the input has rank {ndim}: allowed axes are "
          f"{-ndim}..{ndim - 1}."
      )
    out.append(axis % ndim)
  if len(set(out)) != len(out):
    raise ValueError(f"`{name}` repeats an axis: {tuple(axes)}.")
  return tuple(out)


def check_rank(x: jax.Array, allowed: Sequence[int], op: str, layout: str) -> None:
  if x.ndim not in allowed:
    raise ValueError(
        f"{op} expects `x` of rank {' or '.join(map(str, allowed))} ({layout}); got shape "
        f"{tuple(x.shape)} (rank {x.ndim}). For a single unbatched example add a leading "
        "batch axis or use jax.vmap."
    )


def check_key(key: Any, name: str = "key") -> None:
  """Refuses anything but a PRNG key: a typed key, or a legacy uint32 key ``(..., 2)``.

  The dtype and shape are known even under tracing, so this check always runs. The most
  common way to get here is swapping arguments: every op takes ``(key, x, rate)``.
  """
  dtype = getattr(key, "dtype", None)
  if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
    return
  if dtype is not None and dtype == np.uint32 and np.ndim(key) >= 1:
    return
  described = (f"{dtype} array of shape {tuple(np.shape(key))}" if dtype is not None
               else f"{type(key).__name__} {key!r}")
  raise TypeError(
      f"`{name}` must be a PRNG key (jax.random.key(seed), or a legacy uint32 "
      f"jax.random.PRNGKey); got {described}. dropjax ops take (key, x, rate) in that order."
  )


def check_floating(x: Any, name: str = "x") -> None:
  """Refuses integer, boolean and complex arrays: dropout rescales by 1/q, which they
  cannot hold (an int32 input would be silently truncated)."""
  if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    raise TypeError(f"`{name}` is a PRNG key; dropjax ops take (key, x, rate) in that order.")
  if not jax.dtypes.issubdtype(x.dtype, np.floating):
    raise TypeError(
        f"`{name}` must be a floating-point array (float16, bfloat16, float32 or float64); "
        f"got dtype {x.dtype}. Cast it first, e.g. `{name}.astype(jnp.float32)`."
    )


def check_rate_shape(rate: Any, mask_shape: Sequence[int], name: str = "rate") -> None:
  """Refuses a rate array that does not broadcast to the mask shape without growing it.

  Shapes are static under tracing, so this always runs. It catches haiku's argument order
  ``dropout(key, rate, x)``: a scalar ``x`` with an array ``rate``.
  """
  rate_shape = tuple(np.shape(rate))
  mask_shape = tuple(int(d) for d in mask_shape)
  try:
    ok = np.broadcast_shapes(rate_shape, mask_shape) == mask_shape
  except ValueError:
    ok = False
  if not ok:
    raise ValueError(
        f"`{name}` has shape {rate_shape}, which does not broadcast to the mask shape "
        f"{mask_shape}: a rate is a scalar or an array broadcastable to the mask. dropjax ops "
        "take (key, x, rate), not haiku's (key, rate, x)."
    )


def rate_is_valid(rate: Any) -> jax.Array:
  """``0 <= rate <= 1`` elementwise, False for NaN; for poisoning outputs of traced rates."""
  rate = jax.numpy.asarray(rate, jax.numpy.float32)
  return (rate >= 0.0) & (rate <= 1.0)


def poison_invalid(value: jax.Array, rate: Any) -> jax.Array:
  """``value`` where the rate is a probability and NaN elsewhere.

  A traced rate cannot be checked in Python, so an out-of-range one makes the op's output
  NaN instead of a plausible number. ``value`` should be rate-shaped (a scale factor), so
  this costs nothing per element; concrete rates were already checked by `check_rate` and
  skip it.
  """
  if not isinstance(rate, jax.core.Tracer):
    return value
  return jax.numpy.where(rate_is_valid(rate), value, jax.numpy.nan)


def check_positive_int(value: Any, name: str, *, allow_none: bool = False) -> None:
  """Refuses non-integers (2.5, True) and integers below 1 for counts and sizes."""
  if value is None and allow_none:
    return
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
    allowed = "a positive integer" + (" or None" if allow_none else "")
    raise ValueError(f"`{name}` must be {allowed}; got {value!r}.")


def check_mesh_axis(mesh: Any, axis: str | None, name: str, *,
                    divides: tuple[str, int] | None = None) -> tuple[Any, str | None]:
  """Checks a ``mesh`` and the axis argument ``name`` naming one of its axes; (None, None)
  without a mesh. A one-axis mesh needs no axis name. ``divides=(what, count)``: ``count``
  (named ``what``) must also be a multiple of the axis size."""
  if mesh is None:
    if axis is not None:
      raise ValueError(f"`{name}`={axis!r} needs a `mesh`.")
    return None, None
  if not isinstance(mesh, jax.sharding.Mesh):
    raise TypeError(f"`mesh` must be a jax.sharding.Mesh; got {type(mesh).__name__}.")
  if axis is None:
    if len(mesh.axis_names) != 1:
      raise ValueError(f"`{name}` must name one of the mesh's axes {mesh.axis_names}.")
    axis = mesh.axis_names[0]
  if axis not in mesh.axis_names:
    raise ValueError(f"`{name}` must be one of the mesh's axes {mesh.axis_names}; got "
                     f"{axis!r}.")
  if divides is not None and divides[1] % mesh.shape[axis]:
    raise ValueError(f"{divides[0]}={divides[1]} must be a multiple of the mesh axis {axis!r}'s "
                     f"size {mesh.shape[axis]}.")
  return mesh, axis
