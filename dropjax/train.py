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

from dropjax.data import Split
from dropjax.layers import reseed

ProgressFn = Callable[[dict[str, Any]], None]


def classification_loss(
    model: nnx.Module,
    images: jax.Array,
    labels: jax.Array,
    weight_regularizer: float,
    dropout_regularizer: float,
) -> jax.Array:
  """Mean softmax cross-entropy plus the model's Concrete-dropout penalty, if it has one."""
  logits = model(images)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  if hasattr(model, "regularization"):
    loss = loss + model.regularization(weight_regularizer, dropout_regularizer)
  return loss


def fit_classifier(
    model: nnx.Module,
    train: Split,
    *,
    key: jax.Array,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    weight_decay: float = 0.0,
    weight_regularizer: float = 0.0,
    dropout_regularizer: float = 0.0,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
  """Trains ``model`` in place with Adam(W) on shuffled mini-batches (remainder dropped).

  Args:
    model: an NNX classifier ``images -> logits`` (put in train mode here).
    train: the training split.
    key: the run's key; split into ``data`` and ``dropout`` streams.
    epochs: passes over the data.
    batch_size: examples per step.
    learning_rate: Adam's step size.
    weight_decay: decoupled weight decay (AdamW); 0 for plain Adam.
    weight_regularizer, dropout_regularizer: Concrete-dropout penalty weights.
    progress: called after every epoch with the epoch's statistics.

  Returns:
    ``{"loss": [per-epoch mean loss], "epoch_seconds": [...], "steps": total steps}``.
  """
  n = train.images.shape[0]
  steps_per_epoch = n // batch_size
  if steps_per_epoch < 1:
    raise ValueError(f"`batch_size`={batch_size} exceeds the {n} training examples.")
  data_key, dropout_key = jax.random.split(key)
  tx = optax.adamw(learning_rate, weight_decay=weight_decay) if weight_decay else optax.adam(
      learning_rate)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  model.train()

  @nnx.jit
  def train_step(model, optimizer, images, labels, step_key):
    reseed(model, step_key)
    loss, grads = nnx.value_and_grad(classification_loss)(
        model, images, labels, weight_regularizer, dropout_regularizer)
    optimizer.update(model, grads)
    return loss

  step_fn = nnx.cached_partial(train_step, model, optimizer)
  images, labels = jnp.asarray(train.images), jnp.asarray(train.labels)
  history: dict[str, Any] = {"loss": [], "epoch_seconds": []}
  start = time.perf_counter()
  for epoch in range(epochs):
    tic = time.perf_counter()
    order = jax.random.permutation(jax.random.fold_in(data_key, epoch), n)
    losses = []
    for b in range(steps_per_epoch):
      idx = order[b * batch_size : (b + 1) * batch_size]
      step = epoch * steps_per_epoch + b
      losses.append(step_fn(images[idx], labels[idx], jax.random.fold_in(dropout_key, step)))
    mean_loss = float(jnp.mean(jnp.stack(losses)))
    history["loss"].append(mean_loss)
    history["epoch_seconds"].append(time.perf_counter() - tic)
    if progress is not None:
      elapsed = time.perf_counter() - start
      progress({"epoch": epoch + 1, "epochs": epochs, "loss": mean_loss,
                "eta_seconds": elapsed / (epoch + 1) * (epochs - epoch - 1)})
  history["steps"] = epochs * steps_per_epoch
  return history


def predict_probabilities(model: nnx.Module, images: np.ndarray | jax.Array) -> jax.Array:
  """Deterministic (weight-scaling) class probabilities: the model in eval mode."""
  model.eval()
  return jax.nn.softmax(nnx.jit(lambda m, x: m(x))(model, jnp.asarray(images)))


def fit_ensemble(
    make_model: Callable[[nnx.Rngs], nnx.Module],
    train: Split,
    *,
    keys: jax.Array,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    weight_regularizer: float = 0.0,
    dropout_regularizer: float = 0.0,
) -> tuple[nnx.GraphDef, Any, dict[str, Any]]:
  """Trains ``len(keys)`` models in one vmapped, jitted program (seeds, deep ensembles).

  Member ``k`` is a pure function of ``keys[k]``: its initialisation, its batch order and
  its dropout masks come from named streams of that key. The members' models are the
  same as `fit_classifier` would train from the same key: the per-member stream
  derivation is the same (up to float reassociation in batched matmuls).

  Args:
    make_model: ``rngs -> model``; called once per member inside `jax.vmap`.
    train: the training split (all members see the whole set, each in its own order).
    keys: ``(K,)`` member keys.
    epochs, batch_size, learning_rate: as `fit_classifier` (Adam).
    weight_regularizer, dropout_regularizer: Concrete-dropout penalty weights.

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

  def init(key):
    # Member key -> (init key, train key); the train key splits into (data, dropout)
    # exactly as in fit_classifier.
    init_key = jax.random.split(key)[0]
    _, params, rest = nnx.split(make_model(nnx.Rngs(params=init_key, dropout=0)), nnx.Param, ...)
    return params, rest, tx.init(params)

  graphdef = nnx.split(make_model(nnx.Rngs(params=0, dropout=0)), nnx.Param, ...)[0]
  params, rest, opt_state = jax.vmap(init)(keys)
  member_streams = jax.vmap(lambda k: jax.random.split(jax.random.split(k)[1]))(keys)
  data_keys, dropout_keys = member_streams[:, 0], member_streams[:, 1]

  def loss_fn(params, rest, images, labels, step_key):
    model = nnx.merge(graphdef, params, rest, copy=True)
    model.train()
    reseed(model, step_key)
    loss = classification_loss(model, images, labels, weight_regularizer, dropout_regularizer)
    return loss, nnx.split(model, nnx.Param, ...)[2]

  def member_step(params, rest, opt_state, order, step, dropout_key, images, labels):
    batch = jax.lax.dynamic_slice_in_dim(order, (step % steps_per_epoch) * batch_size,
                                         batch_size)
    (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, rest, images[batch], labels[batch], jax.random.fold_in(dropout_key, step))
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), rest, opt_state, loss

  @jax.jit
  def run_epoch(params, rest, opt_state, epoch, images, labels):
    orders = jax.vmap(lambda k: jax.random.permutation(jax.random.fold_in(k, epoch), n))(
        data_keys)

    def body(carry, step):
      params, rest, opt_state = carry
      params, rest, opt_state, loss = jax.vmap(
          member_step, in_axes=(0, 0, 0, 0, None, 0, None, None))(
              params, rest, opt_state, orders, step, dropout_keys, images, labels)
      return (params, rest, opt_state), loss

    steps = epoch * steps_per_epoch + jnp.arange(steps_per_epoch)
    (params, rest, opt_state), losses = jax.lax.scan(body, (params, rest, opt_state), steps)
    return params, rest, opt_state, losses.mean(0)

  images, labels = jnp.asarray(train.images), jnp.asarray(train.labels)
  losses = []
  for epoch in range(epochs):
    params, rest, opt_state, loss = run_epoch(params, rest, opt_state, epoch, images, labels)
    losses.append(loss)
  return graphdef, (params, rest), {"loss": jnp.stack(losses), "steps": epochs * steps_per_epoch}


def ensemble_member(graphdef: nnx.GraphDef, states: Any, k: int) -> nnx.Module:
  """Member ``k`` of a `fit_ensemble` result as a standalone model."""
  return nnx.merge(graphdef, *jax.tree.map(lambda a: a[k], states))
