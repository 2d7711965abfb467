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
    raise ValueError(
        f"`{name}` must be a probability in [0, 1] (the drop probability, not the keep "
        f"probability); got {rate!r}."
    )
  return value


def normalize_axes(axes: int | Sequence[int], ndim: int, name: str) -> tuple[int, ...]:
  """Maps possibly negative axes into [0, ndim), rejecting out-of-range and repeated axes."""
  if isinstance(axes, (int, np.integer)):
    axes = (int(axes),)
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
