"""Dropout-rate schedules: callables ``step -> rate``, traceable like optax schedules.

Pass the scheduled rate to an op (or a layer's ``rate=`` call argument) as a traced value
inside the jitted train step: changing it never recompiles.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from dropjax._validation import check_rate

Schedule = Callable[[jax.Array | int], jax.Array]


def constant_schedule(rate: float) -> Schedule:
  """A fixed rate.

  Example:
    >>> import dropjax
    >>> float(dropjax.constant_schedule(0.3)(1000))
    0.3...
  """
  check_rate(rate)
  return lambda step: jnp.full((), rate, jnp.float32)


def linear_decay_schedule(
    init_rate: float, end_rate: float, decay_steps: int, begin_step: int = 0
) -> Schedule:
  """Decays linearly from ``init_rate`` to ``end_rate`` over ``decay_steps`` steps.

  Args:
    init_rate: the rate up to ``begin_step``.
    end_rate: the rate from ``begin_step + decay_steps`` on.
    decay_steps: the length of the linear ramp (> 0).
    begin_step: when the ramp starts.

  Returns:
    A schedule ``step -> rate``.

  Example:
    >>> import dropjax
    >>> s = dropjax.linear_decay_schedule(0.5, 0.1, 100)
    >>> round(float(s(50)), 6)
    0.3
  """
  check_rate(init_rate, "init_rate")
  check_rate(end_rate, "end_rate")
  if decay_steps <= 0:
    raise ValueError(f"`decay_steps` must be positive; got {decay_steps}.")
  return optax.linear_schedule(init_rate, end_rate, decay_steps, begin_step)


def curriculum_schedule(
    rate: float, total_steps: int, *, gamma: float | None = None, off_fraction: float = 0.0
) -> Schedule:
  r"""Curriculum dropout: the rate grows from 0 towards ``rate``, optionally off at the end.

  :math:`p(t) = \bar p\,(1 - e^{-\gamma t})` for :math:`t < (1 - f)T`, then 0 for the last
  fraction :math:`f` = ``off_fraction`` of training.

  Args:
    rate: the asymptotic rate :math:`\bar p`.
    total_steps: the length of training ``T``.
    gamma: the growth rate; default ``10 / T`` (within 5e-5 of ``rate`` by the end).
    off_fraction: the final fraction of steps trained without dropout.

  Returns:
    A schedule ``step -> rate``.

  Example:
    >>> import dropjax
    >>> s = dropjax.curriculum_schedule(0.5, 1000, off_fraction=0.1)
    >>> float(s(0)), round(float(s(850)), 3), float(s(950))
    (0.0, 0.5, 0.0)

  References:
    Morerio, Cavazza, Volpi, Vidal, Murino. "Curriculum dropout." ICCV 2017.
  """
  check_rate(rate)
  check_rate(off_fraction, "off_fraction")
  if total_steps <= 0:
    raise ValueError(f"`total_steps` must be positive; got {total_steps}.")
  gamma = 10.0 / total_steps if gamma is None else gamma
  if gamma <= 0:
    raise ValueError(f"`gamma` must be positive; got {gamma}.")
  off_step = (1.0 - off_fraction) * total_steps

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    value = rate * -jnp.expm1(-gamma * step)
    return jnp.where(step < off_step, value, 0.0).astype(jnp.float32)

  return schedule
