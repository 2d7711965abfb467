"""One training loop: pure steps and epochs on optax, with hooks, for any model.

The loop has three layers, each usable alone:

* `train_step`: one optimizer step of a `TrainState` (parameters, other model state,
  optimizer state, step count) on a batch, followed by the `StepHook` s (max-norm, rate
  schedules). Penalties on the weights are optax transforms in ``tx``
  (`dropjax.penalties.l2_decay`), not loss terms.
* `train_epochs`: ``num_epochs`` epochs of steps as one `jax.lax.scan`, pure, so it can
  be jitted, vmapped over members or seeds (`fit_ensemble`, the UCI grid) and resumed
  from any epoch.
* `fit`: the Python driver for one NNX model. It jits an epoch, then runs the
  `EpochHook` s (validation and early stopping, progress, training curves) and saves a
  checkpoint that a resumed run continues from, bitwise.

Keys: the caller's key is split into named streams (``data`` for batch order, ``dropout``
for masks); epoch ``e`` shuffles with ``fold_in(data_key, e)`` and step ``t`` draws its
masks from ``fold_in(dropout_key, t)``, so a run is a function of the key and the step
count alone, and the same seed gives bitwise-identical results on one machine.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import dropjax.data
from dropjax import prng
from dropjax._validation import check_mesh_axis
from dropjax.checkpoint import (
  CheckpointMismatchError,
  check_settings,
  checkpoint_exists,
  load_checkpoint,
  read_checkpoint_metadata,
  save_checkpoint,
  tree_signature,
)
from dropjax.data import Split
from dropjax.layers import Rate, check_sampling, reseed
from dropjax.penalties import check_coefficient, collect_penalties, is_kernel, l2_decay
from dropjax.summaries import ScalarWriter

ProgressFn = Callable[[dict[str, Any]], None]


class TrainState(NamedTuple):
  """Everything a training run carries from step to step (a pytree).

  Attributes:
    params: the differentiated leaves (for NNX models, the ``nnx.Param`` state).
    rest: the model's other state, carried through the loss (dropout rates and RNG
      streams, batch statistics); ``None`` for a model that has none.
    opt_state: the optimizer's state.
    step: optimizer steps taken (an int32 scalar).
  """

  params: Any
  rest: Any
  opt_state: Any
  step: jax.Array


# (params, rest, batch, weight, key) -> (scalar loss, new rest). ``weight`` is None when
# every batch is full, else a (batch,) 0/1 mask of the padding of the epoch's last batch.
LossFn = Callable[[Any, Any, Any, jax.Array | None, jax.Array], tuple[jax.Array, Any]]


class StepHook(NamedTuple):
  """A pure ``TrainState -> TrainState`` map applied around every optimizer step.

  ``init`` runs once on the initial state (`init_train_state`), ``after_step`` after every
  update. Both are traced inside the jitted loop, like an optax transform's functions.

  Attributes:
    init: ``state -> state`` before the first step.
    after_step: ``state -> state`` after each step (``state.step`` already counts it).
    settings: JSON values identifying the hook (its name and parameters); `fit` records
      them in its checkpoints, so a run resumed under another hook is refused.
  """

  init: Callable[[TrainState], TrainState]
  after_step: Callable[[TrainState], TrainState]
  settings: dict[str, Any] | None = None


def init_train_state(params: Any, tx: optax.GradientTransformation, rest: Any = None,
                     hooks: Sequence[StepHook] = ()) -> TrainState:
  """The state before the first step: ``tx.init(params)``, step 0, then each hook's ``init``.

  Args:
    params: the parameters to train.
    tx: the optimizer (with its penalty transforms).
    rest: the model's other state, or None.
    hooks: step hooks; their ``init`` runs here.

  Returns:
    A `TrainState`.
  """
  state = TrainState(params, rest, tx.init(params), jnp.zeros((), jnp.int32))
  for hook in hooks:
    state = hook.init(state)
  return state


def train_step(state: TrainState, batch: Any, weight: jax.Array | None, key: jax.Array, *,
               loss_fn: LossFn, tx: optax.GradientTransformation,
               hooks: Sequence[StepHook] = ()) -> tuple[TrainState, jax.Array]:
  """One update: the loss's gradient through ``tx``, then every hook's ``after_step``.

  Args:
    state: the current state.
    batch: the batch, passed to ``loss_fn`` as is.
    weight: None, or the batch's 0/1 mask of real (not padding) examples.
    key: the step's dropout key.
    loss_fn: see `LossFn`.
    tx: the optimizer; it receives the parameters, so ``optax.add_decayed_weights`` and
      `dropjax.penalties.l2_decay` work.
    hooks: step hooks, applied in order.

  Returns:
    ``(new state, loss)``.
  """
  (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params, state.rest, batch, weight, key)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  state = TrainState(optax.apply_updates(state.params, updates), rest, opt_state,
                     state.step + 1)
  for hook in hooks:
    state = hook.after_step(state)
  return state, loss


def _check_epochs(epochs: Any) -> None:
  if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
    raise ValueError(f"`epochs` must be a positive integer; got {epochs!r}.")


def steps_per_epoch(num_examples: int, batch_size: int, drop_remainder: bool) -> int:
  """Steps in one epoch: ``N // B`` dropping the partial batch, else ``ceil(N / B)``.

  Raises:
    ValueError: ``batch_size`` is not positive, or exceeds ``num_examples`` while dropping
      the remainder (an epoch would have no step).
  """
  if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or (
      batch_size < 1):
    raise ValueError(f"`batch_size` must be a positive integer; got {batch_size!r}.")
  if drop_remainder and batch_size > num_examples:
    raise ValueError(f"`batch_size`={batch_size} exceeds the {num_examples} training "
                     "examples.")
  return num_examples // batch_size if drop_remainder else -(-num_examples // batch_size)


def epoch_batches(key: jax.Array, epoch: Any, num_examples: int, batch_size: int, *,
                  drop_remainder: bool) -> tuple[jax.Array, jax.Array | None]:
  """The example indices of every step of an epoch, shuffled by ``fold_in(key, epoch)``.

  Args:
    key: the data stream's key.
    epoch: the epoch (may be traced).
    num_examples: N.
    batch_size: B.
    drop_remainder: drop the last ``N mod B`` examples of the order (a fresh order each
      epoch, so none is left out for good); else pad the last batch, like Keras.

  Returns:
    ``(indices (steps, B), weight)``: ``weight`` is None when dropping the remainder, else
    the ``(steps, B)`` 0/1 mask of real examples (padding points at example 0).
  """
  steps = steps_per_epoch(num_examples, batch_size, drop_remainder)
  order = jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)
  if drop_remainder:
    return order[: steps * batch_size].reshape(steps, batch_size), None
  padded = steps * batch_size
  order = jnp.concatenate([order, jnp.zeros(padded - num_examples, order.dtype)])
  weight = (jnp.arange(padded) < num_examples).astype(jnp.float32)
  return order.reshape(steps, batch_size), weight.reshape(steps, batch_size)


def weighted_mean(values: jax.Array, weight: jax.Array | None) -> jax.Array:
  """``values.mean()``, or its mean over the real examples when ``weight`` masks padding."""
  if weight is None:
    return values.mean()
  return jnp.sum(weight * values) / jnp.sum(weight)


def train_epochs(
    state: TrainState,
    data: Any,
    *,
    keys: tuple[jax.Array, jax.Array],
    first_epoch: Any,
    num_epochs: int,
    batch_size: int,
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    hooks: Sequence[StepHook] = (),
    drop_remainder: bool = False,
    unroll: int = 1,
    batch_sharding: jax.sharding.Sharding | None = None,
) -> tuple[TrainState, jax.Array]:
  """``num_epochs`` epochs from ``first_epoch``: a pure function, for one model.

  Jit it, vmap it over members (each with its own keys) or run it in segments: step
  ``t = epoch * steps_per_epoch + b`` draws its masks from ``fold_in(dropout_key, t)``
  whatever the segment length, so training in segments equals one run, bitwise.

  Args:
    state: from `init_train_state` or a previous segment.
    data: a pytree of arrays with the examples on the leading axis; a batch is every
      leaf indexed by the step's indices.
    keys: ``(data_key, dropout_key)``.
    first_epoch: the epoch to start from (may be traced; resuming passes the checkpoint's).
    num_epochs: epochs to run (static).
    batch_size: examples per step (static).
    loss_fn: see `LossFn`.
    tx: the optimizer.
    hooks: step hooks (`max_norm_hook`, `rate_schedule_hook`).
    drop_remainder: see `epoch_batches`.
    unroll: `jax.lax.scan`'s unroll of the step loop.
    batch_sharding: data parallelism: every batch is constrained to this sharding (for
      example ``NamedSharding(mesh, P("data"))``) with the state and data replicated, and
      XLA partitions the step (the gradient's mean becomes an all-reduce). Masks do not
      change: JAX's partitionable threefry draws the same bits in any layout.

  Returns:
    ``(state, losses)``: the per-epoch mean training loss, ``(num_epochs,)``.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> x = jnp.linspace(-1, 1, 32)[:, None]
    >>> data = (x, 3.0 * x[:, 0])
    >>> def loss_fn(params, rest, batch, weight, key):
    ...   xb, yb = batch
    ...   return weighted_mean((xb @ params - yb) ** 2, weight), rest
    >>> tx = optax.sgd(0.5)
    >>> state = init_train_state(jnp.zeros(1), tx)
    >>> keys = tuple(jax.random.split(jax.random.key(0)))
    >>> state, losses = train_epochs(state, data, keys=keys, first_epoch=0, num_epochs=20,
    ...                              batch_size=8, loss_fn=loss_fn, tx=tx)
    >>> round(float(state.params[0]), 3), int(state.step)
    (3.0, 80)
  """
  data_key, dropout_key = keys
  n = jax.tree.leaves(data)[0].shape[0]
  steps = steps_per_epoch(n, batch_size, drop_remainder)

  def epoch_body(state, epoch):
    indices, weights = epoch_batches(data_key, epoch, n, batch_size,
                                     drop_remainder=drop_remainder)

    def step_body(state, inputs):
      b, idx, weight = inputs
      key = jax.random.fold_in(dropout_key, epoch * steps + b)
      batch = jax.tree.map(lambda a: a[idx], data)
      if batch_sharding is not None:
        batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
      return train_step(state, batch, weight, key, loss_fn=loss_fn, tx=tx, hooks=hooks)

    state, losses = jax.lax.scan(step_body, state, (jnp.arange(steps), indices, weights),
                                 unroll=unroll)
    return state, losses.mean()

  if num_epochs == 1:  # one epoch per call (`fit`): no outer loop for XLA to compile
    state, loss = epoch_body(state, jnp.asarray(first_epoch))
    return state, loss[None]
  return jax.lax.scan(epoch_body, state, first_epoch + jnp.arange(num_epochs))


def kernel_l2(model: nnx.Module) -> jax.Array:
  """Sum of squared weights over every parameter named ``kernel`` (biases and norms excluded)."""
  total = jnp.zeros(())
  for param in _kernels(model):
    total = total + jnp.sum(jnp.square(param[...]))
  return total


def _unit_norms(kernel: jax.Array) -> jax.Array:
  """The L2 norm of each unit's incoming weights: a kernel's slices along its last axis."""
  return jnp.sqrt(jnp.sum(jnp.square(kernel), axis=tuple(range(kernel.ndim - 1))))


def _project_units(kernel: jax.Array, max_norm: float) -> jax.Array:
  """``kernel`` with each unit's incoming weights scaled down to L2 norm ``max_norm``."""
  return kernel * jnp.minimum(1.0, max_norm / jnp.maximum(_unit_norms(kernel), 1e-12))


def _kernels(model: nnx.Module):
  for path, param in nnx.iter_graph(model):
    if isinstance(param, nnx.Param) and path and path[-1] == "kernel":
      yield param


def max_norm_projection(model: nnx.Module, max_norm: float) -> None:
  """Rescales, in place, every unit's incoming weights to an L2 norm of at most ``max_norm``.

  A unit's incoming weights are a kernel's slice along its last (output) axis, so this
  serves dense ``(in, out)`` and convolution ``(h, w, in, out)`` kernels alike. Biases are
  not constrained.

  References:
    Srivastava et al. "Dropout: a simple way to prevent neural networks from overfitting."
    JMLR 15, 2014, section 5.1 (dropout + max-norm was their best MNIST regulariser).
  """
  for param in _kernels(model):
    param[...] = _project_units(param[...], max_norm)


def largest_unit_norm(model: nnx.Module) -> float:
  """The largest L2 norm of any unit's incoming weights (the quantity max-norm bounds).

  A max-norm constraint ``c`` changed nothing in a run whose unconstrained twin ends with
  ``largest_unit_norm(model) < c`` (and never exceeded it on the way).

  Example:
    >>> from flax import nnx
    >>> from dropjax.models import MLP
    >>> model = MLP(4, [8], 2, rngs=nnx.Rngs(0))
    >>> max_norm_projection(model, 0.5)
    >>> largest_unit_norm(model) <= 0.5 + 1e-6
    True
  """
  return max(float(jnp.max(_unit_norms(param[...]))) for param in _kernels(model))


def rate_variables(model: nnx.Module) -> list[Rate]:
  """The model's array rates (`dropjax.layers.Rate` state), in graph order."""
  return [v for _, v in nnx.iter_graph(model) if isinstance(v, Rate)]


def classification_loss(
    model: nnx.Module,
    images: jax.Array,
    labels: jax.Array,
    l2: float = 0.0,
) -> jax.Array:
  """Mean cross-entropy + ``l2 * sum(kernel**2)`` + the model's penalties.

  The penalties are `dropjax.penalties.collect_penalties`: the sum of ``penalty()`` over
  every module that defines it (the Concrete-dropout penalty of `dropjax.models.MLP` and
  `dropjax.models.ConvNet`, of `dropjax.layers.ConcreteDropoutWrapper`, or your own).

  Args:
    model: an NNX classifier ``images -> logits``.
    images: a batch of inputs.
    labels: integer class labels.
    l2: coefficient of ``sum(kernel**2)`` (`kernel_l2`).

  Returns:
    The scalar loss.
  """
  loss = cross_entropy_loss(model, (images, labels), None)
  return loss + l2 * kernel_l2(model) if l2 else loss


def max_norm_hook(max_norm: float,
                  where: Callable[[tuple[Any, ...]], bool] = is_kernel) -> StepHook:
  """A step hook projecting every unit's incoming weights to an L2 norm of at most ``max_norm``.

  The parameter-tree form of `max_norm_projection`: after every step, each leaf whose path
  satisfies ``where`` (the kernels, by default) has its slices along the last axis scaled
  down to norm ``max_norm`` where they exceed it.

  Args:
    max_norm: the bound ``c`` (> 0).
    where: ``path -> bool``, which parameters are constrained (`dropjax.penalties.is_kernel`).

  Returns:
    A `StepHook` (the initial weights are left as they are, as in the paper).

  References:
    Srivastava et al. "Dropout: a simple way to prevent neural networks from overfitting."
    JMLR 15, 2014, section 5.1.
  """
  if isinstance(max_norm, (bool, np.bool_)) or not isinstance(max_norm, (int, float, np.number)):
    raise TypeError(f"`max_norm` must be a positive number; got {max_norm!r}.")
  max_norm = float(max_norm)
  if not (np.isfinite(max_norm) and max_norm > 0):
    raise ValueError(f"`max_norm` must be a positive, finite number; got {max_norm!r}.")

  def project(state: TrainState) -> TrainState:
    def one(path, w):
      return _project_units(w, max_norm) if where(path) else w

    return state._replace(params=jax.tree_util.tree_map_with_path(one, state.params))

  return StepHook(init=lambda state: state, after_step=project,
                  settings={"hook": "max_norm", "max_norm": max_norm})


def rate_schedule_hook(schedule: Callable[[jax.Array], jax.Array], base_rates: Any) -> StepHook:
  """A step hook that trains step ``t`` with every array rate at ``schedule(t)`` times its base.

  The rates are the `dropjax.layers.Rate` variables in `TrainState.rest` (an NNX model
  built with array rates, e.g. ``jnp.asarray(0.5)``); they are traced, so no step
  recompiles. ``init`` sets them for step 0 and ``after_step`` for the next step, so a
  model trained by `fit` ends with the rates of the step after its last; set them back
  (``nnx.update(model, base_rates)``) before MC sampling, as `fit_classifier` does.

  Args:
    schedule: ``step -> factor`` (e.g. from `dropjax.schedules`).
    base_rates: ``nnx.state(model, Rate)`` before training: the rates the factor scales.

  Returns:
    A `StepHook`.
  """
  def apply(state: TrainState) -> TrainState:
    factor = schedule(state.step)
    _, others = nnx.split_state(state.rest, Rate, ...)
    scaled = jax.tree.map(lambda base: base * factor, base_rates)
    return state._replace(rest=nnx.merge_state(scaled, others))

  # A schedule is a function: record its values at a few steps, so that a resumed run
  # under another schedule is refused.
  probe = [0, 1, 10, 100, 1_000, 10_000, 100_000]
  return StepHook(init=apply, after_step=apply, settings={
      "hook": "rate_schedule",
      "factors": {str(t): float(schedule(jnp.int32(t))) for t in probe}})


@nnx.jit
def _apply(model: nnx.Module, x: jax.Array) -> jax.Array:
  # One jitted function for every call: models of one architecture reuse its trace.
  return model(x)


class EpochHook:
  """Runs after every epoch of `fit`, in Python, on the model as trained so far.

  Subclass it and override what you need. After each epoch `fit` calls every hook's
  ``after_epoch`` (which may add scalars to the epoch's record, seen by later hooks and
  returned per epoch, and may stop training), then writes the checkpoint, then calls every
  hook's ``report``: progress and curves report only epochs a resumed run will not redo. A
  hook with state of its own returns it from ``checkpoint_state``, so a resumed run
  continues it.
  """

  def settings(self) -> dict[str, Any]:
    """JSON values recorded in the checkpoint: resuming under others is refused."""
    return {}

  def start(self, first_epoch: int, epochs: int) -> None:
    """Called before the first epoch this invocation runs (``first_epoch`` > 0 on resume)."""

  def after_epoch(self, epoch: int, model: nnx.Module, record: dict[str, Any]) -> bool:
    """Called after epoch ``epoch`` (0-based); True stops training."""
    return False

  def report(self, epoch: int, record: dict[str, Any]) -> None:
    """Called after epoch ``epoch``'s checkpoint is written, with its complete record."""

  def end(self, model: nnx.Module, history: dict[str, Any]) -> None:
    """Called once training ends (also when it resumed an already finished run)."""

  def checkpoint_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(trees, metadata)`` saved with every checkpoint."""
    return {}, {}

  def restore(self, trees: dict[str, Any], metadata: dict[str, Any]) -> None:
    """Sets the hook's state from a checkpoint's ``checkpoint_state``."""

  def templates(self, model: nnx.Module) -> dict[str, Any]:
    """Pytrees shaped like every tree ``checkpoint_state`` may return, to restore into."""
    return {}

  def close(self) -> None:
    """Releases what the hook holds (files); `fit` calls it however training ends."""

  @property
  def stateful(self) -> bool:
    """Whether the hook keeps state that a resumed run must continue: it overrides
    ``checkpoint_state``."""
    return type(self).checkpoint_state is not EpochHook.checkpoint_state


class Validation(EpochHook):
  """Records the deterministic NLL of a held-out split after every epoch; early stopping.

  ``best_epoch`` (added to `fit`'s history) counts from 0, like ``epoch`` in the hooks;
  the curves count epochs from 1.

  Args:
    split: the validation split.
    patience: stop after this many epochs without a better NLL; with it, training ends
      (stopped or not) with the best epoch's weights restored. None records the NLL only.
  """

  def __init__(self, split: dropjax.data.Split, patience: int | None = None):
    if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int)
                                 or patience < 1):
      raise ValueError(f"`patience` must be a positive integer or None; got {patience!r}.")
    self.split, self.patience = split, patience
    self.best_epoch, self.best_nll, self.bad_epochs = None, np.inf, 0
    self.best_state = None

  def settings(self) -> dict[str, Any]:
    return {"patience": self.patience, "validation_examples": len(self.split.labels)}

  def after_epoch(self, epoch, model, record):
    model.eval()
    check_sampling(model, False, context="Validation")
    logits = _apply(model, jnp.asarray(self.split.images))
    model.train()
    nll = float(optax.softmax_cross_entropy_with_integer_labels(
        logits, jnp.asarray(self.split.labels)).mean())
    record["val_nll"] = nll
    # NaN is worse than any number: a diverged epoch is never the best one.
    if self.best_epoch is None or nll < self.best_nll or (
        np.isnan(self.best_nll) and not np.isnan(nll)):
      self.best_epoch, self.best_nll, self.bad_epochs = epoch, nll, 0
      if self.patience is not None:  # only early stopping restores the best weights
        self.best_state = jax.tree.map(jnp.copy, nnx.state(model))
      return False
    self.bad_epochs += 1
    return self.patience is not None and self.bad_epochs >= self.patience

  def end(self, model, history):
    history["best_epoch"] = self.best_epoch
    if self.patience is not None and self.best_state is not None:
      nnx.update(model, self.best_state)

  def checkpoint_state(self):
    trees = {} if self.best_state is None else {"best": self.best_state}
    return trees, {"best_epoch": self.best_epoch, "best_nll": self.best_nll,
                   "bad_epochs": self.bad_epochs}

  def restore(self, trees, metadata):
    self.best_state = trees.get("best")
    self.best_epoch, self.bad_epochs = metadata["best_epoch"], metadata["bad_epochs"]
    self.best_nll = metadata["best_nll"]

  def templates(self, model):
    return {"best": nnx.state(model)}


class Progress(EpochHook):
  """Calls ``fn({"epoch", "epochs", "loss", "eta_seconds"})`` after every epoch."""

  def __init__(self, fn: ProgressFn):
    self.fn = fn

  def start(self, first_epoch, epochs):
    self.first, self.epochs, self.clock = first_epoch, epochs, time.perf_counter()

  def report(self, epoch, record):
    elapsed = time.perf_counter() - self.clock
    self.fn({"epoch": epoch + 1, "epochs": self.epochs, "loss": record["loss"],
             "eta_seconds": elapsed / (epoch + 1 - self.first) * (self.epochs - epoch - 1)})


class WriteScalars(EpochHook):
  """Writes every scalar of the epoch's record (loss, val_nll, ...) to a
  `dropjax.summaries.ScalarWriter` at the epoch's number (1-based): training curves.

  Args:
    writer: the writer (see `to_folder` for one the hook opens and closes).
    prefix: prepended to every tag (e.g. ``"train/"``).
    owned: close the writer when training ends.
  """

  def __init__(self, writer: Any, prefix: str = "", owned: bool = False):
    self.writer, self.prefix, self.owned = writer, prefix, owned

  @classmethod
  def to_folder(cls, logdir: str, prefix: str = "") -> WriteScalars:
    """Writes to a `dropjax.summaries.ScalarWriter` on ``logdir``, opened when training
    starts and closed when it ends (however it ends)."""
    hook = cls(None, prefix, owned=True)
    hook.logdir = logdir
    return hook

  def start(self, first_epoch, epochs):
    if self.writer is None:
      self.writer = ScalarWriter(self.logdir)

  def close(self):
    if self.owned and self.writer is not None:
      self.writer.close()
      self.writer = None

  def report(self, epoch, record):
    self.writer.write_scalars(epoch + 1, {
        f"{self.prefix}{name}": value for name, value in record.items()
        if isinstance(value, (int, float)) and name != "epoch"})


# (model, batch, weight) -> scalar: the loss of an NNX model in train mode, reseeded.
ModelLoss = Callable[[nnx.Module, Any, jax.Array | None], jax.Array]


def cross_entropy_loss(model: nnx.Module, batch: tuple[jax.Array, jax.Array],
                       weight: jax.Array | None) -> jax.Array:
  """Mean cross-entropy of ``model(images)`` + the model's penalties (`collect_penalties`).

  The `ModelLoss` `fit_classifier` trains with; ``batch`` is ``(images, labels)``.
  """
  images, labels = batch
  nll = optax.softmax_cross_entropy_with_integer_labels(model(images), labels)
  return weighted_mean(nll, weight) + collect_penalties(model)


def model_loss_fn(graphdef: nnx.GraphDef, loss: ModelLoss) -> LossFn:
  """A `LossFn` for an NNX model split as ``(graphdef, params, rest)``: each call merges the
  model in train mode, reseeds its dropout layers from the step's key, evaluates ``loss``
  and carries the model's new non-parameter state (batch statistics, RNG counts)."""
  def loss_fn(params, rest, batch, weight, step_key):
    model = nnx.merge(graphdef, params, rest, copy=True)
    model.train()
    reseed(model, step_key)
    return loss(model, batch, weight), nnx.split(model, nnx.Param, ...)[2]

  return loss_fn


def _impl_name(key: jax.Array) -> str:
  """A typed key's generator by name: ``keyed_hash`` (not its spec's short tag), ``rbg``."""
  impl = jax.random.key_impl(key)
  named = [name for name, spec in prng.IMPLS.items()
           if jax.random.key_impl(jax.random.key(0, impl=spec)) == impl]
  return named[0] if named else str(impl)


def fit(
    model: nnx.Module,
    data: Any,
    *,
    key: jax.Array,
    epochs: int,
    batch_size: int,
    tx: optax.GradientTransformation,
    loss: ModelLoss = cross_entropy_loss,
    step_hooks: Sequence[StepHook] = (),
    epoch_hooks: Sequence[EpochHook] = (),
    drop_remainder: bool = True,
    checkpoint_path: str | None = None,
    settings: dict[str, Any] | None = None,
    mesh: Mesh | None = None,
    data_axis: str | None = None,
) -> dict[str, Any]:
  """Trains an NNX model in place with `train_epochs`, one jitted epoch at a time.

  After every epoch the model holds the weights so far, the ``epoch_hooks`` run on it in
  order, and, with ``checkpoint_path``, a checkpoint is written atomically. A run resumed
  from it ends with exactly the numbers of an uninterrupted one.

  Args:
    model: the NNX model (put in train mode here; its dropout layers are reseeded from
      ``fold_in(dropout_key, step)`` at every step).
    data: a pytree of arrays with the examples on the leading axis (for `cross_entropy_loss`,
      ``(images, labels)``).
    key: the run's key; split into ``data`` and ``dropout`` streams.
    epochs: epochs to train (the maximum, if a hook stops early).
    batch_size: examples per step.
    tx: the optimizer, with its penalties chained in (`dropjax.penalties.l2_decay`).
    loss: ``(model, batch, weight) -> scalar``.
    step_hooks: `max_norm_hook`, `rate_schedule_hook`, or your own.
    epoch_hooks: `Validation`, `Progress`, `WriteScalars`, or your own `EpochHook`.
    drop_remainder: see `epoch_batches`.
    checkpoint_path: a checkpoint directory (`dropjax.checkpoint`) written after every
      epoch, recording the run's settings (key, epochs, batch size, data size, state
      structure, ``settings``, each hook's settings and which hooks keep state); if it
      exists, training resumes from it (restoring the hooks' state too), and one recording
      other settings is refused (`CheckpointMismatchError`, naming them). Hooks without
      state (`Progress`, `WriteScalars`) may change between a run and its resumption.
    settings: further JSON values identifying the run (e.g. the optimizer's settings).
    mesh: data parallelism over the axis ``data_axis`` of this `jax.sharding.Mesh`: each
      batch is split over that axis, the weights and the data are replicated (the model
      ends with replicated weights). ``batch_size`` must be a multiple of the axis size.
      Masks and batches are those of one device; the numbers agree up to the order of the
      gradient's reduction. Checkpoints are written and read by one host (a multi-host run
      needs ``checkpoint_path=None`` for now).
    data_axis: the mesh axis of the batch; may be left out for a one-axis mesh.

  Returns:
    A dict: ``loss`` and ``epoch_seconds`` (lists, one entry per epoch), a list per scalar
    the hooks added (e.g. ``val_nll``), ``steps``, ``stopped_early``, and what the hooks'
    ``end`` adds (``best_epoch`` for `Validation`).
  """
  _check_epochs(epochs)
  sizes = {jnp.shape(leaf)[0] if jnp.ndim(leaf) else None for leaf in jax.tree.leaves(data)}
  if len(sizes) != 1 or None in sizes:
    raise ValueError("`data` must be arrays with the examples on one leading axis of the same "
                     f"length; got leading sizes {sorted(map(str, sizes))}.")
  n = sizes.pop()
  per_epoch = steps_per_epoch(n, batch_size, drop_remainder)
  mesh, data_axis = check_mesh_axis(mesh, data_axis, "data_axis",
                                    divides=("`batch_size`", batch_size))
  data_key, dropout_key = jax.random.split(key)
  model.train()
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  state = init_train_state(params, tx, rest, step_hooks)
  batch_sharding = None if mesh is None else NamedSharding(mesh, P(data_axis))
  # Hooks with state of their own (early stopping's best weights) are checkpointed; the
  # others (progress, curves) may differ between a run and its resumption.
  stateful = [hook for hook in epoch_hooks if hook.stateful]

  loss_fn = model_loss_fn(graphdef, loss)

  # The keys are arguments, not constants: seeds then share one executable (and a
  # persistent compilation cache entry).
  @jax.jit
  def run_epoch(state, data, epoch, keys):
    state, losses = train_epochs(state, data, keys=keys, first_epoch=epoch,
                                 num_epochs=1, batch_size=batch_size, loss_fn=loss_fn, tx=tx,
                                 hooks=step_hooks, drop_remainder=drop_remainder,
                                 batch_sharding=batch_sharding)
    return state, losses[0]

  records: list[dict[str, Any]] = []
  start_epoch, stopped = 0, False
  if checkpoint_path is not None:
    typed_key = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    run_settings = {
        "key": np.asarray(jax.random.key_data(key) if typed_key else key).tolist(),
        # The same key data under another generator (dropjax.prng's keyed hash shares
        # threefry's) draws other masks. Recorded only for generators other than JAX's
        # default, so the threefry checkpoints written before this setting existed resume.
        **({"key_impl": _impl_name(key)} if typed_key and jax.random.key_impl(key)
           != jax.random.key_impl(jax.random.key(0)) else {}),
        "epochs": epochs, "batch_size": batch_size, "drop_remainder": drop_remainder,
        "train_examples": n, "model_structure": tree_signature((state.params, state.rest)),
        "optimizer_structure": tree_signature(state.opt_state),
        "step_hooks": [hook.settings for hook in step_hooks],
        "stateful_epoch_hooks": [type(hook).__name__ for hook in stateful],
    }
    for extra in [settings or {}, *(hook.settings() for hook in epoch_hooks)]:
      clash = sorted(set(extra) & set(run_settings))
      if clash:
        raise ValueError(f"Settings {clash} are recorded twice (by `fit` and by `settings` or "
                         "an epoch hook's settings()); rename them.")
      run_settings.update(extra)
  if checkpoint_path is not None and checkpoint_exists(checkpoint_path):
    # Another run's checkpoint would be continued silently: refuse before restoring it.
    stored_meta = read_checkpoint_metadata(checkpoint_path)
    check_settings(checkpoint_path, stored_meta.get("settings"), run_settings)
    templates = {"state": state}
    for i, hook in enumerate(stateful):
      saved, shapes = stored_meta["hooks"][i]["trees"], hook.templates(model)
      if set(saved) - set(shapes):
        raise CheckpointMismatchError(
            f"{checkpoint_path} holds trees {sorted(set(saved) - set(shapes))} of "
            f"{type(hook).__name__} that its templates() do not describe; they would be lost.")
      templates.update({f"hook{i}/{k}": shapes[k] for k in saved})
    trees, meta = load_checkpoint(checkpoint_path, templates)
    state = trees["state"]
    nnx.update(model, state.params, state.rest)
    # The penalty coefficients live in the model, outside its state: the restored weights
    # give the recorded penalty only under the coefficients they were trained with.
    penalty = float(collect_penalties(model))
    if not np.isclose(penalty, meta["penalty"], rtol=1e-5, atol=0.0):
      raise CheckpointMismatchError(
          f"{checkpoint_path} was trained with other penalty coefficients: its weights gave "
          f"the penalty {meta['penalty']!r} then and give {penalty!r} under this model "
          "(weight_regularizer / dropout_regularizer, or a module's penalty(), changed). Use "
          "the same model settings, another checkpoint_path, or delete it.")
    for i, hook in enumerate(stateful):
      prefix = f"hook{i}/"
      hook.restore({k[len(prefix):]: v for k, v in trees.items() if k.startswith(prefix)},
                   meta["hooks"][i]["metadata"])
    records, start_epoch, stopped = meta["records"], meta["epoch"], meta["stopped_early"]
  if mesh is not None:  # the state to train (fresh or restored), replicated once
    state, data = place_on_mesh((state, data), NamedSharding(mesh, P()))
    nnx.update(model, state.params, state.rest)

  try:
    return _fit_epochs(model, data, state,
                       functools.partial(run_epoch, keys=(data_key, dropout_key)), epoch_hooks,
                       stateful, records, start_epoch, epochs, stopped, per_epoch,
                       checkpoint_path, run_settings if checkpoint_path is not None else None)
  finally:
    for hook in epoch_hooks:
      hook.close()


def _fit_epochs(model, data, state, run_epoch, epoch_hooks, stateful, records, start_epoch,
                epochs, stopped, per_epoch, checkpoint_path, run_settings):
  """`fit`'s epochs from ``start_epoch``, its hooks and checkpoints; returns the history."""
  for hook in epoch_hooks:
    hook.start(start_epoch, epochs)
  for epoch in range(start_epoch, epochs):
    if stopped:
      break
    tic = time.perf_counter()
    state, epoch_loss = run_epoch(state, data, epoch)
    nnx.update(model, state.params, state.rest)
    record: dict[str, Any] = {"epoch": epoch + 1, "loss": float(epoch_loss)}
    for hook in epoch_hooks:
      stopped = bool(hook.after_epoch(epoch, model, record)) or stopped
    record["epoch_seconds"] = time.perf_counter() - tic
    records.append(record)
    if checkpoint_path is not None:
      hook_states = [hook.checkpoint_state() for hook in stateful]
      trees = {"state": state}
      for i, (hook_trees, _) in enumerate(hook_states):
        trees.update({f"hook{i}/{k}": v for k, v in hook_trees.items()})
      save_checkpoint(checkpoint_path, trees, {
          "records": records, "epoch": epoch + 1, "stopped_early": stopped,
          "settings": run_settings, "penalty": float(collect_penalties(model)),
          "hooks": [{"trees": sorted(t), "metadata": m} for t, m in hook_states]})
    for hook in epoch_hooks:
      hook.report(epoch, record)
  history: dict[str, Any] = {"steps": len(records) * per_epoch, "stopped_early": stopped}
  for name in dict.fromkeys(k for r in records for k in r if k != "epoch"):
    history[name] = [r[name] for r in records if name in r]
  history.setdefault("loss", [])
  history.setdefault("epoch_seconds", [])
  for hook in epoch_hooks:
    hook.end(model, history)
  return history


def fit_classifier(
    model: nnx.Module,
    train: Split,
    *,
    key: jax.Array,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    weight_decay: float = 0.0,
    l2: float = 0.0,
    validation: Split | None = None,
    patience: int | None = None,
    max_norm: float | None = None,
    rate_scale: Callable[[jax.Array], jax.Array] | None = None,
    checkpoint_path: str | None = None,
    progress: ProgressFn | None = None,
    epoch_hooks: Sequence[EpochHook] = (),
    mesh: Mesh | None = None,
    data_axis: str | None = None,
) -> dict[str, Any]:
  """`fit` for a classifier with Adam(W): the settings the studies use, as keywords.

  Each keyword becomes a part of the one loop: ``l2`` an optax transform
  (`dropjax.penalties.l2_decay`, chained before Adam), ``max_norm`` and ``rate_scale``
  step hooks, ``validation``/``patience`` and ``progress`` epoch hooks. Mini-batches are
  shuffled per epoch and the remainder is dropped. For anything else, call `fit`.

  Args:
    model: an NNX classifier ``images -> logits`` (put in train mode here).
    train: the training split.
    key: the run's key; split into ``data`` and ``dropout`` streams.
    epochs: passes over the data (the maximum, with early stopping).
    batch_size: examples per step.
    learning_rate: Adam's step size.
    weight_decay: decoupled weight decay (AdamW); 0 for plain Adam.
    l2: coefficient of the L2 penalty ``sum(kernel**2)`` (`dropjax.penalties.l2_decay`).
      The model's own penalties (``penalty()`` of its modules, e.g. Concrete dropout's)
      are always in the loss (`cross_entropy_loss`).
    validation: a held-out split; its deterministic NLL is recorded after every epoch
      (`Validation`).
    patience: with ``validation``, stop after this many epochs without a better NLL and
      restore the best epoch's weights (early stopping).
    max_norm: if set, every unit's incoming weights are projected to this L2 norm after
      every step (`max_norm_hook`).
    rate_scale: a schedule ``step -> factor`` (e.g. from `dropjax.schedules`): step t
      trains with every array rate (`rate_variables`) at ``factor(t)`` times its value at
      the start (`rate_schedule_hook`); the rates are restored when training ends (MC
      dropout then samples at those rates).
    checkpoint_path: see `fit`.
    progress: called after every epoch with the epoch's statistics (`Progress`).
    epoch_hooks: further epoch hooks (e.g. `WriteScalars`), run after those above.
    mesh, data_axis: data parallelism over a mesh axis (see `fit`).

  Returns:
    `fit`'s history, with ``val_nll`` (empty without ``validation``) and ``best_epoch``
    (None without it). ``loss`` is the data term plus the model's own penalties; the
    ``l2`` term is a gradient transform and is not in it.
  """
  if patience is not None and validation is None:
    raise ValueError("`patience` (early stopping) needs a `validation` split.")
  steps_per_epoch(train.images.shape[0], batch_size, True)
  for name, value in (("learning_rate", learning_rate), ("weight_decay", weight_decay),
                      ("l2", l2)):
    check_coefficient(value, name)
  tx = optax.adamw(learning_rate, weight_decay=weight_decay) if weight_decay else optax.adam(
      learning_rate)
  if l2:
    tx = optax.chain(l2_decay(l2), tx)
  step_hooks = []
  base_rates = jax.tree.map(jnp.copy, nnx.state(model, Rate))
  if rate_scale is not None:
    if not jax.tree.leaves(base_rates):
      raise ValueError("`rate_scale` needs a model built with array rates (e.g. "
                       "`jnp.asarray(0.5)`), which layers hold as `Rate` state; this one has "
                       "none.")
    step_hooks.append(rate_schedule_hook(rate_scale, base_rates))
  if max_norm is not None:
    step_hooks.append(max_norm_hook(max_norm))
  hooks: list[EpochHook] = []
  if validation is not None:
    hooks.append(Validation(validation, patience))
  if progress is not None:
    hooks.append(Progress(progress))
  settings = {"learning_rate": float(learning_rate), "weight_decay": float(weight_decay),
              "l2": float(l2)}
  try:
    history = fit(model, (jnp.asarray(train.images), jnp.asarray(train.labels)), key=key,
                  epochs=epochs, batch_size=batch_size, tx=tx, step_hooks=step_hooks,
                  epoch_hooks=[*hooks, *epoch_hooks], checkpoint_path=checkpoint_path,
                  settings=settings, mesh=mesh, data_axis=data_axis)
  finally:
    if rate_scale is not None:  # MC dropout samples at the rates the model was built with
      nnx.update(model, base_rates)
  history.setdefault("val_nll", [])
  history.setdefault("best_epoch", None)
  return history


def predict_probabilities(model: nnx.Module, images: np.ndarray | jax.Array) -> jax.Array:
  """Deterministic (weight-scaling) class probabilities: the model in eval mode.

  Refuses a model whose dropout layers would still sample after ``.eval()`` (a dropjax
  layer left in MC mode by `dropjax.layers.set_mc`): its "deterministic" predictions
  would be random.
  """
  model.eval()
  check_sampling(model, False, context="predict_probabilities")
  return jax.nn.softmax(_apply(model, jnp.asarray(images)))


def fit_ensemble(
    make_model: Callable[..., nnx.Module],
    train: Split,
    *,
    keys: jax.Array,
    hparams: dict[str, Any] | None = None,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    vectorize: bool = True,
    mesh: Mesh | None = None,
    member_axis: str | None = None,
) -> tuple[nnx.GraphDef, Any, dict[str, Any]]:
  """Trains ``len(keys)`` models in one jitted program: seeds, hyper-parameters, ensembles.

  Member ``k`` is a pure function of ``keys[k]``: its initialisation, its batch order and
  its dropout masks come from named streams of that key. The members' models are the
  same as `fit_classifier` would train from the same key: the per-member stream
  derivation is the same (up to float reassociation in batched matmuls).

  Args:
    make_model: ``(rngs, **hparams) -> model``; called once per member inside `jax.vmap`,
      with member k's slice of every hyper-parameter (a traced scalar: dropjax layers
      keep array rates in their state, so one program serves every rate).
    train: the training split (all members see the whole set, each in its own order).
    keys: ``(K,)`` member keys.
    hparams: optional ``{name: (K,) array}`` passed to ``make_model`` per member.
    epochs, batch_size, learning_rate: as `fit_classifier` (Adam). The loss is
      `cross_entropy_loss`: the models' ``penalty()`` terms are added (pass penalty
      coefficients to the model in ``make_model``).
    vectorize: ``True`` vmaps the members (one batched step for all: the fast choice for
      dense models, and on accelerators); ``False`` trains them one after another
      (``jax.lax.map``) inside the same program. On XLA:CPU a vmapped convolution with
      per-member kernels becomes a grouped convolution off Eigen's fast path: a step of
      5 MNIST LeNet-5 members took 583 ms vmapped and 89 ms mapped (2 CPUs, `bench_conv.py`).
      The members are the same either way, up to float reassociation.
    mesh: shard the members over the axis ``member_axis`` of this `jax.sharding.Mesh`
      (`jax.shard_map`; each device trains its members, vmapped or mapped, and the data is
      replicated). The member count must be a multiple of the axis size. A member's keys,
      and so its masks and batches, do not depend on the mesh; its numbers agree with the
      unsharded run up to float reassociation.
    member_axis: the mesh axis of the members; may be left out for a one-axis mesh.

  Returns:
    ``(graphdef, states, history)``: ``states`` holds every member's variables stacked on
    a leading axis; ``nnx.merge(graphdef, jax.tree.map(lambda a: a[k], states))`` is
    member ``k``. ``history["loss"]`` is ``(epochs, K)``.
  """
  _check_epochs(epochs)
  per_epoch = steps_per_epoch(train.images.shape[0], batch_size, True)
  mesh, member_axis = check_mesh_axis(mesh, member_axis, "member_axis",
                                      divides=("the member count (`keys`)", keys.shape[0]))
  tx = optax.adam(learning_rate)

  hparams = {k: jnp.asarray(v, jnp.float32) for k, v in (hparams or {}).items()}
  for name, values in hparams.items():
    if values.shape != (keys.shape[0],):
      raise ValueError(f"hparams[{name!r}] must have shape ({keys.shape[0]},); got {values.shape}.")

  def init(key, hp):
    # Member key -> (init key, train key); the train key splits into (data, dropout)
    # exactly as in fit_classifier.
    init_key = jax.random.split(key)[0]
    model = make_model(nnx.Rngs(params=init_key, dropout=0), **hp)
    _, params, rest = nnx.split(model, nnx.Param, ...)
    return params, rest

  # The graph is taken under tracing, as inside vmap: a traced rate of 0 must still build
  # a dropout layer (a concrete 0 builds none).
  template = {}

  def build(hp):
    template["graphdef"], params, rest = nnx.split(
        make_model(nnx.Rngs(params=0, dropout=0), **hp), nnx.Param, ...)
    return params, rest

  jax.eval_shape(build, {k: v[0] for k, v in hparams.items()})
  graphdef = template["graphdef"]
  params, rest = jax.vmap(init)(keys, hparams)
  member_streams = jax.vmap(lambda k: jax.random.split(jax.random.split(k)[1]))(keys)
  data_keys, dropout_keys = member_streams[:, 0], member_streams[:, 1]

  member_loss = model_loss_fn(graphdef, cross_entropy_loss)

  def member_epoch(state, member_keys, epoch, data):
    state, losses = train_epochs(state, data, keys=member_keys, first_epoch=epoch, num_epochs=1,
                                 batch_size=batch_size, loss_fn=member_loss, tx=tx,
                                 drop_remainder=True)
    return state, losses[0]

  def local_epoch(states, member_keys, epoch, data):
    if vectorize:
      return jax.vmap(member_epoch, in_axes=(0, 0, None, None))(states, member_keys, epoch, data)
    return jax.lax.map(lambda m: member_epoch(*m, epoch, data), (states, member_keys))

  if mesh is not None:
    # check_vma off: reseeding writes a constant RNG count into each member's state, which
    # the varying-axis check reads as a carry that stops varying over the member axis.
    local_epoch = jax.shard_map(
        local_epoch, mesh=mesh, in_specs=(P(member_axis), P(member_axis), P(), P()),
        out_specs=(P(member_axis), P(member_axis)), axis_names=frozenset({member_axis}),
        check_vma=False)
  # The member keys are arguments, not constants: one executable serves other keys.
  run_epoch = jax.jit(local_epoch)

  states = jax.vmap(lambda p, r: init_train_state(p, tx, r))(params, rest)
  data = (jnp.asarray(train.images), jnp.asarray(train.labels))
  member_keys = (data_keys, dropout_keys)
  if mesh is not None:
    states, member_keys = place_on_mesh((states, member_keys),
                                        NamedSharding(mesh, P(member_axis)))
    data = place_on_mesh(data, NamedSharding(mesh, P()))
  losses = []
  for epoch in range(epochs):
    states, loss = run_epoch(states, member_keys, epoch, data)
    losses.append(loss)
  params, rest = states.params, states.rest
  # Return only once the work is done, so callers can time training.
  jax.block_until_ready((params, rest))
  return graphdef, (params, rest), {"loss": jnp.stack(losses), "steps": epochs * per_epoch}


def place_on_mesh(tree: Any, sharding: jax.sharding.Sharding) -> Any:
  """Every leaf of ``tree`` as a global array with ``sharding``, built from the values this
  process holds (`jax.make_array_from_callback`).

  Unlike `jax.device_put`, this works when the sharding spans devices of other processes
  (after `jax.distributed.initialize`): each process fills its own shards, so every
  process must hold the same values (as it does for state derived from the same keys).
  Typed PRNG keys are placed as their key data and wrapped again.
  """
  def place(leaf):
    typed = jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)
    host = np.asarray(jax.random.key_data(leaf) if typed else leaf)
    out = jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
    return jax.random.wrap_key_data(out, impl=jax.random.key_impl(leaf)) if typed else out

  return jax.tree.map(place, tree)


def ensemble_member(graphdef: nnx.GraphDef, states: Any, k: int) -> nnx.Module:
  """Member ``k`` of a `fit_ensemble` result as a standalone model."""
  return nnx.merge(graphdef, *jax.tree.map(lambda a: a[k], states))
