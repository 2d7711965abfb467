"""Loss penalties from any model: a module contributes by defining ``penalty()``.

The protocol: a module that adds a term to the training loss defines
``penalty(self) -> jax.Array``, a scalar computed from its own parameters and settings
(no arguments: coefficients are set when the module is built). `collect_penalties` sums
the penalties of every module of a model, and `dropjax.train.classification_loss` adds
that sum to the data term, so `dropjax.train.fit_classifier` and
`dropjax.train.fit_ensemble` train any model that follows the protocol, dropjax's or
yours. Concrete dropout is the case in point: `dropjax.models.MLP` and
`dropjax.models.ConvNet` take ``weight_regularizer`` and ``dropout_regularizer`` and
implement ``penalty()``, and `dropjax.layers.ConcreteDropoutWrapper` brings the same
penalty to a layer of your own model.

A module's ``penalty()`` should cover its own terms only: `collect_penalties` visits
every submodule, so a parent that also summed its children's penalties would count them
twice.

Example:
  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> from dropjax.penalties import collect_penalties
  >>> class L2Linear(nnx.Module):
  ...   def __init__(self, rngs):
  ...     self.linear = nnx.Linear(3, 2, rngs=rngs)
  ...   def __call__(self, x):
  ...     return self.linear(x)
  ...   def penalty(self):
  ...     return 1e-2 * jnp.sum(self.linear.kernel[...] ** 2)
  >>> model = nnx.Sequential(L2Linear(nnx.Rngs(0)), L2Linear(nnx.Rngs(1)))
  >>> total = collect_penalties(model)
  >>> bool(jnp.allclose(total, model.layers[0].penalty() + model.layers[1].penalty()))
  True
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx


@runtime_checkable
class HasPenalty(Protocol):
  """A module that adds ``penalty()`` (a scalar) to the training loss."""

  def penalty(self) -> jax.Array: ...


def module_penalties(model: nnx.Module) -> list[tuple[tuple[Any, ...], jax.Array]]:
  """``(path, penalty())`` of every module of ``model`` that defines ``penalty``.

  In graph order (`flax.nnx.iter_modules`: children before their parent, ``model`` itself
  last, with the path ``()``).

  Args:
    model: any NNX module.

  Returns:
    A list of ``(path, scalar)`` pairs, empty when no module defines ``penalty``.

  Raises:
    TypeError: a module's ``penalty`` attribute is not a method.
    ValueError: a ``penalty()`` returned something other than a scalar.
  """
  found = []
  for path, module in nnx.iter_modules(model):
    method = getattr(module, "penalty", None)
    if method is None:
      continue
    where = f"{type(module).__name__} at {'/'.join(map(str, path)) or '<root>'}"
    if not callable(method):
      raise TypeError(f"`penalty` of {where} is a {type(method).__name__}, not a method: "
                      "a module contributes to the loss by defining `penalty(self) -> "
                      "jax.Array`; rename the attribute.")
    value = jnp.asarray(method())
    if value.shape != ():
      raise ValueError(f"penalty() of {where} must return a scalar; got shape {value.shape}.")
    found.append((path, value))
  return found


def collect_penalties(model: nnx.Module) -> jax.Array:
  """The sum of ``penalty()`` over every module of ``model``, ``model`` itself included.

  Terms are added in graph order (`module_penalties`), so the same model always gives
  the same sum, bitwise. Add it to the loss:
  ``loss = data_term + collect_penalties(model)``.

  Args:
    model: any NNX module.

  Returns:
    A scalar; 0.0 when no module defines ``penalty``.

  Raises:
    TypeError, ValueError: see `module_penalties`.

  Example:
    >>> from flax import nnx
    >>> from dropjax.models import MLP
    >>> from dropjax.penalties import collect_penalties
    >>> plain = MLP(4, [8], 2, rngs=nnx.Rngs(0))
    >>> float(collect_penalties(plain))
    0.0
    >>> concrete = MLP(4, [8], 2, variant="concrete", weight_regularizer=1e-4,
    ...                dropout_regularizer=1e-3, rngs=nnx.Rngs(0))
    >>> bool(collect_penalties(concrete) == concrete.penalty())
    True
  """
  total = None
  for _, value in module_penalties(model):
    # Starting from the first term, not from 0.0: a single penalty passes through exactly.
    total = value if total is None else total + value
  return jnp.zeros(()) if total is None else total


def check_coefficient(value: Any, name: str) -> float:
  """A penalty coefficient as a plain float: finite, >= 0 and known when the model is built.

  Coefficients are static settings of a module (not state): a traced value (a model
  built inside `jax.jit` or `jax.vmap` with an array coefficient) cannot be one.

  Args:
    value: a Python or NumPy number (or a concrete 0-d array).
    name: the argument's name, for the message.

  Returns:
    ``float(value)``.

  Raises:
    TypeError: ``value`` is traced, boolean or not a number.
    ValueError: ``value`` is negative, NaN or infinite.
  """
  if isinstance(value, jax.core.Tracer):
    raise TypeError(f"`{name}` must be a Python float fixed when the model is built; got a "
                    "traced value (an array passed through jax.jit or jax.vmap). Pass a "
                    "float, or build one model per coefficient.")
  number_like = isinstance(value, numbers.Real) or (
      isinstance(value, (np.ndarray, jax.Array)) and value.ndim == 0
      and np.issubdtype(value.dtype, np.number))
  if isinstance(value, (bool, np.bool_)) or not number_like:
    raise TypeError(f"`{name}` must be a Python float; got {value!r}.")
  number = float(value)
  if not (math.isfinite(number) and number >= 0.0):
    raise ValueError(f"`{name}` must be a finite number >= 0; got {value!r}.")
  return number


def _key_name(entry: Any) -> Any:
  for attribute in ("key", "name", "idx"):
    if hasattr(entry, attribute):
      return getattr(entry, attribute)
  return entry


def is_kernel(path: tuple[Any, ...]) -> bool:
  """Whether a pytree path names a kernel (a weight matrix or filter bank, not a bias).

  True when the leaf, or the variable holding it, is called ``kernel``: the path of an
  NNX ``Linear``/``Conv`` kernel in ``nnx.state(model)`` ends ``['kernel'].value``.

  Args:
    path: a path from `jax.tree_util.tree_flatten_with_path`.
  """
  return "kernel" in [_key_name(entry) for entry in path[-2:]]


def kernel_mask(params: Any) -> Any:
  """``params``' tree of booleans: True at the kernels (`is_kernel`), False elsewhere."""
  return jax.tree_util.tree_map_with_path(lambda path, _: is_kernel(path), params)


def l2_decay(coefficient: float,
             mask: Any | Callable[[Any], Any] = kernel_mask) -> optax.GradientTransformation:
  """The L2 penalty ``coefficient * sum(w**2)`` as an optax transform: its gradient.

  Adds ``2 * coefficient * w`` to the gradient of every masked leaf (the kernels by
  default; biases and normalisation scales are not penalised), which is the gradient of
  the penalty. Chain it before the optimizer, so Adam sees the penalised gradient, as a
  loss term would give (this is not AdamW's decoupled decay).

  Args:
    coefficient: the penalty's coefficient (>= 0; may be traced, e.g. ``c / N`` with a
      traced ``N``).
    mask: a tree of booleans like the parameters, or a function of the parameters giving
      one (default `kernel_mask`).

  Returns:
    An `optax.GradientTransformation` that needs the parameters in ``update``.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from dropjax.penalties import l2_decay
    >>> params = {"kernel": jnp.ones(2), "bias": jnp.ones(2)}
    >>> tx = l2_decay(0.5)
    >>> grads = {"kernel": jnp.zeros(2), "bias": jnp.zeros(2)}
    >>> updates, _ = tx.update(grads, tx.init(params), params)
    >>> updates["kernel"].tolist(), updates["bias"].tolist()
    ([1.0, 1.0], [0.0, 0.0])

  References:
    Krogh & Hertz. "A simple weight decay can improve generalization." NeurIPS 1991.
  """
  if not isinstance(coefficient, jax.core.Tracer):
    check_coefficient(coefficient, "coefficient")
  return optax.add_decayed_weights(2.0 * coefficient, mask=mask)
