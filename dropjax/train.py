"""A small, reproducible classification training loop on optax.

Keys: the caller's key is split into named streams (``data`` for batch order, ``dropout``
for masks); step ``t`` draws its masks from ``fold_in(dropout_key, t)``, so a run is a
function of the key and the step count alone, and the same seed gives bitwise-identical
results on one machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

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
from dropjax.penalties import collect_penalties

ProgressFn = Callable[[dict[str, Any]], None]


def kernel_l2(model: nnx.Module) -> jax.Array:
  """Sum of squared weights over every parameter named ``kernel`` (biases and norms excluded)."""
  total = jnp.zeros(())
  for path, param in nnx.iter_graph(model):
    if isinstance(param, nnx.Param) and path and path[-1] == "kernel":
      total = total + jnp.sum(jnp.square(param[...]))
  return total


def _unit_norms(kernel: jax.Array) -> jax.Array:
  """The L2 norm of each unit's incoming weights: a kernel's slices along its last axis."""
  return jnp.sqrt(jnp.sum(jnp.square(kernel), axis=tuple(range(kernel.ndim - 1))))


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
    kernel = param[...]
    param[...] = kernel * jnp.minimum(1.0, max_norm / jnp.maximum(_unit_norms(kernel), 1e-12))


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
  logits = model(images)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  if l2:
    loss = loss + l2 * kernel_l2(model)
  return loss + collect_penalties(model)


def _validation_nll(model: nnx.Module, split: Split) -> float:
  model.eval()
  logits = nnx.jit(lambda m, x: m(x))(model, jnp.asarray(split.images))
  model.train()
  return float(optax.softmax_cross_entropy_with_integer_labels(
      logits, jnp.asarray(split.labels)).mean())


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
) -> dict[str, Any]:
  """Trains ``model`` in place with Adam(W) on shuffled mini-batches (remainder dropped).

  Batch order of epoch e comes from ``fold_in(data_key, e)`` and the masks of step t from
  ``fold_in(dropout_key, t)``, so training is a pure function of ``key`` and a run resumed
  from a checkpoint ends with exactly the numbers of an uninterrupted one.

  Args:
    model: an NNX classifier ``images -> logits`` (put in train mode here).
    train: the training split.
    key: the run's key; split into ``data`` and ``dropout`` streams.
    epochs: passes over the data (the maximum, with early stopping).
    batch_size: examples per step.
    learning_rate: Adam's step size.
    weight_decay: decoupled weight decay (AdamW); 0 for plain Adam.
    l2: coefficient of the L2 penalty ``sum(kernel**2)`` added to the loss. The model's
      own penalties (``penalty()`` of its modules, e.g. Concrete dropout's, with the
      coefficients given to the model) are always added (`classification_loss`).
    validation: a held-out split; its deterministic NLL is recorded after every epoch.
    patience: with ``validation``, stop after this many epochs without a better NLL and
      restore the best epoch's weights (early stopping).
    max_norm: if set, every unit's incoming weights are projected to this L2 norm after
      every step (`max_norm_projection`).
    rate_scale: a schedule ``step -> factor`` (e.g. from `dropjax.schedules`): step t
      trains with every array rate (`rate_variables`) at ``factor(t)`` times its value at
      the start. The rates are traced, so no step recompiles; they are restored to their
      starting values when training ends (MC dropout then samples at those rates).
    checkpoint_path: a checkpoint directory (`dropjax.checkpoint`, orbax) written
      atomically after every epoch, recording the
      settings it was trained with (key, epochs, batch size, optimiser and regulariser
      settings, data size, model and optimizer structure); if it exists when
      training starts, training resumes from it. A checkpoint recording other settings,
      or none, is refused (`dropjax.checkpoint.CheckpointMismatchError`, naming them).
    progress: called after every epoch with the epoch's statistics.

  Returns:
    A dict: ``loss``, ``val_nll`` and ``epoch_seconds`` (lists, one entry per epoch),
    ``steps`` (int), ``best_epoch`` (int or None) and ``stopped_early`` (bool).
  """
  if patience is not None and validation is None:
    raise ValueError("`patience` (early stopping) needs a `validation` split.")
  n = train.images.shape[0]
  steps_per_epoch = n // batch_size
  if steps_per_epoch < 1:
    raise ValueError(f"`batch_size`={batch_size} exceeds the {n} training examples.")
  data_key, dropout_key = jax.random.split(key)
  tx = optax.adamw(learning_rate, weight_decay=weight_decay) if weight_decay else optax.adam(
      learning_rate)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  model.train()

  base_rates = []
  if rate_scale is not None:
    base_rates = [jnp.copy(v[...]) for v in rate_variables(model)]
    if not base_rates:
      raise ValueError("`rate_scale` needs a model built with array rates (e.g. "
                       "`jnp.asarray(0.5)`), which layers hold as `Rate` state; this one has "
                       "none.")

  @nnx.jit
  def train_step(model, optimizer, images, labels, step_key, step):
    reseed(model, step_key)
    if rate_scale is not None:
      factor = rate_scale(step)
      for variable, base in zip(rate_variables(model), base_rates, strict=True):
        variable[...] = base * factor
    loss, grads = nnx.value_and_grad(classification_loss)(model, images, labels, l2)
    optimizer.update(model, grads)
    if max_norm is not None:
      max_norm_projection(model, max_norm)
    return loss

  history: dict[str, Any] = {"loss": [], "val_nll": [], "epoch_seconds": [], "best_epoch": None,
                             "stopped_early": False}
  best_state = nnx.state(model)
  start_epoch, bad_epochs = 0, 0
  if checkpoint_path is not None:
    typed_key = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    settings = {
        "key": np.asarray(jax.random.key_data(key) if typed_key else key).tolist(),
        "epochs": epochs, "batch_size": batch_size, "learning_rate": float(learning_rate),
        "weight_decay": float(weight_decay), "l2": float(l2),
        "max_norm": None if max_norm is None else float(max_norm), "patience": patience,
        "rate_scale": rate_scale is not None, "train_examples": n,
        "validation_examples": None if validation is None else len(validation.labels),
        "model_structure": tree_signature(nnx.state(model)),
        "optimizer_structure": tree_signature(nnx.state(optimizer)),
    }
  if checkpoint_path is not None and checkpoint_exists(checkpoint_path):
    # Another run's checkpoint would be continued silently: refuse before restoring it.
    check_settings(checkpoint_path, read_checkpoint_metadata(checkpoint_path).get("settings"),
                   settings)
    trees, meta = load_checkpoint(checkpoint_path, {
        "model": nnx.state(model), "optimizer": nnx.state(optimizer), "best": best_state})
    nnx.update(model, trees["model"])
    # The penalty coefficients live in the model, outside its state: the restored weights
    # give the recorded penalty only under the coefficients they were trained with.
    penalty = float(collect_penalties(model))
    if "penalty" in meta and not np.isclose(penalty, meta["penalty"], rtol=1e-5, atol=0.0):
      raise CheckpointMismatchError(
          f"{checkpoint_path} was trained with other penalty coefficients: its weights gave "
          f"the penalty {meta['penalty']!r} then and give {penalty!r} under this model "
          "(weight_regularizer / dropout_regularizer, or a module's penalty(), changed). Use "
          "the same model settings, another checkpoint_path, or delete it.")
    nnx.update(optimizer, trees["optimizer"])
    best_state = trees["best"]
    history, start_epoch, bad_epochs = meta["history"], meta["epoch"], meta["bad_epochs"]

  step_fn = nnx.cached_partial(train_step, model, optimizer)
  images, labels = jnp.asarray(train.images), jnp.asarray(train.labels)
  start = time.perf_counter()
  for epoch in range(start_epoch, epochs):
    if history["stopped_early"]:
      break
    tic = time.perf_counter()
    order = jax.random.permutation(jax.random.fold_in(data_key, epoch), n)
    losses = []
    for b in range(steps_per_epoch):
      idx = order[b * batch_size : (b + 1) * batch_size]
      step = epoch * steps_per_epoch + b
      losses.append(step_fn(images[idx], labels[idx], jax.random.fold_in(dropout_key, step),
                            jnp.int32(step)))
    history["loss"].append(float(jnp.mean(jnp.stack(losses))))
    if validation is not None:
      val_nll = _validation_nll(model, validation)
      history["val_nll"].append(val_nll)
      if history["best_epoch"] is None or val_nll < min(history["val_nll"][:-1], default=np.inf):
        history["best_epoch"], bad_epochs = epoch, 0
        best_state = jax.tree.map(jnp.copy, nnx.state(model))
      else:
        bad_epochs += 1
        history["stopped_early"] = patience is not None and bad_epochs >= patience
    history["epoch_seconds"].append(time.perf_counter() - tic)
    if checkpoint_path is not None:
      save_checkpoint(
          checkpoint_path,
          {"model": nnx.state(model), "optimizer": nnx.state(optimizer), "best": best_state},
          {"history": history, "epoch": epoch + 1, "bad_epochs": bad_epochs,
           "settings": settings, "penalty": float(collect_penalties(model))},
      )
    if progress is not None:
      done = epoch + 1 - start_epoch
      elapsed = time.perf_counter() - start
      progress({"epoch": epoch + 1, "epochs": epochs, "loss": history["loss"][-1],
                "eta_seconds": elapsed / done * (epochs - epoch - 1)})
  if patience is not None:
    nnx.update(model, best_state)
  if rate_scale is not None:
    for variable, base in zip(rate_variables(model), base_rates, strict=True):
      variable[...] = base
  history["steps"] = len(history["loss"]) * steps_per_epoch
  return history


def predict_probabilities(model: nnx.Module, images: np.ndarray | jax.Array) -> jax.Array:
  """Deterministic (weight-scaling) class probabilities: the model in eval mode.

  Refuses a model whose dropout layers would still sample after ``.eval()`` (a dropjax
  layer left in MC mode by `dropjax.layers.set_mc`): its "deterministic" predictions
  would be random.
  """
  model.eval()
  check_sampling(model, False, context="predict_probabilities")
  return jax.nn.softmax(nnx.jit(lambda m, x: m(x))(model, jnp.asarray(images)))


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
      `classification_loss`: the models' ``penalty()`` terms are added (pass penalty
      coefficients to the model in ``make_model``).
    vectorize: ``True`` vmaps the members (one batched step for all: the fast choice for
      dense models, and on accelerators); ``False`` trains them one after another
      (``jax.lax.map``) inside the same program. On XLA:CPU a vmapped convolution with
      per-member kernels becomes a grouped convolution off Eigen's fast path: a step of
      5 MNIST LeNet-5 members took 583 ms vmapped and 89 ms mapped (2 CPUs, `bench_conv.py`).
      The members are the same either way, up to float reassociation.

  Returns:
    ``(graphdef, states, history)``: ``states`` holds every member's variables stacked on
    a leading axis; ``nnx.merge(graphdef, jax.tree.map(lambda a: a[k], states))`` is
    member ``k``. ``history["loss"]`` is ``(epochs, K)``.
  """
  n = train.images.shape[0]
  steps_per_epoch = n // batch_size
  if steps_per_epoch < 1:
    raise ValueError(f"`batch_size`={batch_size} exceeds the {n} training examples.")
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
    return params, rest, tx.init(params)

  # The graph is taken under tracing, as inside vmap: a traced rate of 0 must still build
  # a dropout layer (a concrete 0 builds none).
  template = {}

  def build(hp):
    template["graphdef"], params, rest = nnx.split(
        make_model(nnx.Rngs(params=0, dropout=0), **hp), nnx.Param, ...)
    return params, rest

  jax.eval_shape(build, {k: v[0] for k, v in hparams.items()})
  graphdef = template["graphdef"]
  params, rest, opt_state = jax.vmap(init)(keys, hparams)
  member_streams = jax.vmap(lambda k: jax.random.split(jax.random.split(k)[1]))(keys)
  data_keys, dropout_keys = member_streams[:, 0], member_streams[:, 1]

  def loss_fn(params, rest, images, labels, step_key):
    model = nnx.merge(graphdef, params, rest, copy=True)
    model.train()
    reseed(model, step_key)
    loss = classification_loss(model, images, labels)
    return loss, nnx.split(model, nnx.Param, ...)[2]

  def member_step(params, rest, opt_state, order, step, dropout_key, images, labels):
    batch = jax.lax.dynamic_slice_in_dim(order, (step % steps_per_epoch) * batch_size,
                                         batch_size)
    (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, rest, images[batch], labels[batch], jax.random.fold_in(dropout_key, step))
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), rest, opt_state, loss

  def vectorized_epoch(params, rest, opt_state, orders, steps, images, labels):
    def body(carry, step):
      params, rest, opt_state = carry
      params, rest, opt_state, loss = jax.vmap(
          member_step, in_axes=(0, 0, 0, 0, None, 0, None, None))(
              params, rest, opt_state, orders, step, dropout_keys, images, labels)
      return (params, rest, opt_state), loss

    (params, rest, opt_state), losses = jax.lax.scan(body, (params, rest, opt_state), steps)
    return params, rest, opt_state, losses.mean(0)

  def mapped_epoch(params, rest, opt_state, orders, steps, images, labels):
    def member_epoch(member):
      params, rest, opt_state, order, dropout_key = member

      def body(carry, step):
        params, rest, opt_state, loss = member_step(*carry, order, step, dropout_key, images,
                                                    labels)
        return (params, rest, opt_state), loss

      (params, rest, opt_state), losses = jax.lax.scan(body, (params, rest, opt_state), steps)
      return params, rest, opt_state, losses.mean()

    return jax.lax.map(member_epoch, (params, rest, opt_state, orders, dropout_keys))

  @jax.jit
  def run_epoch(params, rest, opt_state, epoch, images, labels):
    orders = jax.vmap(lambda k: jax.random.permutation(jax.random.fold_in(k, epoch), n))(
        data_keys)
    steps = epoch * steps_per_epoch + jnp.arange(steps_per_epoch)
    epoch_fn = vectorized_epoch if vectorize else mapped_epoch
    return epoch_fn(params, rest, opt_state, orders, steps, images, labels)

  images, labels = jnp.asarray(train.images), jnp.asarray(train.labels)
  losses = []
  for epoch in range(epochs):
    params, rest, opt_state, loss = run_epoch(params, rest, opt_state, epoch, images, labels)
    losses.append(loss)
  # Return only once the work is done, so callers can time training.
  jax.block_until_ready((params, rest))
  return graphdef, (params, rest), {"loss": jnp.stack(losses), "steps": epochs * steps_per_epoch}


def ensemble_member(graphdef: nnx.GraphDef, states: Any, k: int) -> nnx.Module:
  """Member ``k`` of a `fit_ensemble` result as a standalone model."""
  return nnx.merge(graphdef, *jax.tree.map(lambda a: a[k], states))
