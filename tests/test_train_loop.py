"""The one training loop (`dropjax.train`): its contract, once for every step hook and
penalty transform, and its epoch hooks."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from simulated_devices import run_on_simulated_devices

from dropjax import layers, schedules, summaries
from dropjax.data import load_digits
from dropjax.models import MLP
from dropjax.penalties import l2_decay
from dropjax.train import (
    EpochHook,
    Validation,
    WriteScalars,
    fit,
    init_train_state,
    kernel_l2,
    max_norm_hook,
    max_norm_projection,
    rate_schedule_hook,
    train_epochs,
)

DATA = load_digits()
X = jnp.asarray(DATA.train.images.reshape(len(DATA.train.labels), -1)[:200])
Y = jnp.asarray(DATA.train.labels[:200])


def _model(seed=0):
  return MLP(64, [16], 10, input_rate=jnp.asarray(0.2), hidden_rate=jnp.asarray(0.4),
             rngs=nnx.Rngs(params=seed, dropout=0))


def _setup(name, seed=0):
  """(state, loss_fn, tx, hooks) of a small NNX MLP under one step hook or transform."""
  model = _model(seed)
  model.train()
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  tx, hooks = optax.adam(1e-2), []
  if name == "l2_decay":
    tx = optax.chain(l2_decay(1e-3), tx)
  elif name == "max_norm_hook":
    hooks = [max_norm_hook(0.5)]
  elif name == "rate_schedule_hook":
    hooks = [rate_schedule_hook(schedules.linear_decay_schedule(1.0, 0.0, 20),
                                nnx.state(model, layers.Rate))]

  def loss_fn(params, rest, batch, weight, key):
    m = nnx.merge(graphdef, params, rest, copy=True)
    layers.reseed(m, key)
    xb, yb = batch
    nll = optax.softmax_cross_entropy_with_integer_labels(m(xb), yb)
    value = nll.mean() if weight is None else jnp.sum(weight * nll) / jnp.sum(weight)
    return value, nnx.split(m, nnx.Param, ...)[2]

  return init_train_state(params, tx, rest, hooks), loss_fn, tx, hooks, graphdef


def _run(name, state, loss_fn, tx, hooks, keys, first, epochs, drop_remainder):
  return train_epochs(state, (X, Y), keys=keys, first_epoch=first, num_epochs=epochs,
                      batch_size=48, loss_fn=loss_fn, tx=tx, hooks=hooks,
                      drop_remainder=drop_remainder)


def _leaves(tree):
  return [np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype,
                                                                     jax.dtypes.prng_key) else x)
          for x in jax.tree.leaves(tree)]


PARTS = ["none", "l2_decay", "max_norm_hook", "rate_schedule_hook"]


@pytest.mark.parametrize("drop_remainder", [True, False])
@pytest.mark.parametrize("name", PARTS)
def test_segments_equal_one_run_and_vmapped_equals_separate(name, drop_remainder):
  state, loss_fn, tx, hooks, _ = _setup(name)
  keys = tuple(jax.random.split(jax.random.key(1)))
  run = jax.jit(lambda st, first, k: _run(name, st, loss_fn, tx, hooks, k, first, 2,
                                          drop_remainder))
  whole, losses = jax.jit(lambda st: _run(name, st, loss_fn, tx, hooks, keys, 0, 4,
                                          drop_remainder))(state)
  half, first_losses = run(state, 0, keys)
  resumed, last_losses = run(half, 2, keys)
  for a, b in zip(_leaves(whole), _leaves(resumed), strict=True):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(losses, jnp.concatenate([first_losses, last_losses]))
  steps = (4 * (200 // 48)) if drop_remainder else 4 * -(-200 // 48)
  assert int(whole.step) == steps
  # Two seeds' runs in one vmapped program equal the runs alone (up to batched rounding).
  other = tuple(jax.random.split(jax.random.key(2)))
  stacked_keys = tuple(jnp.stack(pair) for pair in zip(keys, other, strict=True))
  both, _ = jax.jit(jax.vmap(lambda k: _run(name, state, loss_fn, tx, hooks, k, 0, 2,
                                            drop_remainder)))(stacked_keys)
  alone, _ = run(state, 0, other)
  for a, b in zip(_leaves(alone.params), _leaves(both.params), strict=True):
    np.testing.assert_allclose(a, b[1], rtol=1e-5, atol=1e-6)
  for a, b in zip(_leaves(half.params), _leaves(both.params), strict=True):
    np.testing.assert_allclose(a, b[0], rtol=1e-5, atol=1e-6)


def test_l2_decay_trains_exactly_as_the_penalty_in_the_loss():
  state, loss_fn, _, _, graphdef = _setup("none")
  keys = tuple(jax.random.split(jax.random.key(1)))
  c = 3e-3

  def penalised(params, rest, batch, weight, key):
    value, rest = loss_fn(params, rest, batch, weight, key)
    return value + c * kernel_l2(nnx.merge(graphdef, params, rest)), rest

  adam = optax.adam(1e-2)
  as_transform = optax.chain(l2_decay(c), adam)
  a, _ = _run("", init_train_state(state.params, as_transform, state.rest), loss_fn,
              as_transform, [], keys, 0, 2, True)
  b, _ = _run("", init_train_state(state.params, adam, state.rest), penalised, adam, [], keys,
              0, 2, True)
  for x, y in zip(_leaves(a.params), _leaves(b.params), strict=True):
    np.testing.assert_array_equal(x, y)
  with pytest.raises(ValueError, match="coefficient"):
    l2_decay(-1.0)


def test_step_hooks_do_what_they_say():
  # max-norm: the hook is max_norm_projection on the parameter tree, and it binds.
  state, loss_fn, tx, hooks, graphdef = _setup("max_norm_hook")
  keys = tuple(jax.random.split(jax.random.key(1)))
  trained, _ = _run("", state, loss_fn, tx, hooks, keys, 0, 1, True)
  model = nnx.merge(graphdef, trained.params, trained.rest)
  norms = [float(jnp.max(jnp.linalg.norm(d.kernel[...], axis=0))) for d in model.denses]
  assert max(norms) <= 0.5 + 1e-6 and max(norms) > 0.49
  projected = nnx.merge(graphdef, state.params, state.rest)
  max_norm_projection(projected, 0.5)
  again = hooks[0].after_step(state)
  for a, b in zip(_leaves(nnx.state(projected, nnx.Param)), _leaves(again.params), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)  # eager vs jitted rounding
  with pytest.raises(ValueError, match="max_norm"):
    max_norm_hook(0.0)
  # rate schedule: after t steps the rates are base * schedule(t), and they trained so.
  state, loss_fn, tx, hooks, graphdef = _setup("rate_schedule_hook")
  trained, _ = _run("", state, loss_fn, tx, hooks, keys, 0, 1, True)
  rates = jax.tree.leaves(nnx.split_state(trained.rest, layers.Rate, ...)[0])
  factor = float(schedules.linear_decay_schedule(1.0, 0.0, 20)(int(trained.step)))
  np.testing.assert_allclose(sorted(float(r) for r in rates), [0.2 * factor, 0.4 * factor],
                             rtol=1e-6)


class _StopAt(EpochHook):
  def __init__(self, epoch):
    self.epoch, self.reports = epoch, []

  def after_epoch(self, epoch, model, record):
    record["twice_loss"] = 2 * record["loss"]
    return epoch + 1 == self.epoch

  def report(self, epoch, record):
    self.reports.append(dict(record))


def test_fit_runs_epoch_hooks_in_order_and_writes_curves(tmp_path):
  model = _model()
  stop = _StopAt(2)
  split = type(DATA.validation)(DATA.validation.images.reshape(-1, 64), DATA.validation.labels)
  history = fit(model, (X, Y), key=jax.random.key(0), epochs=5, batch_size=32,
                tx=optax.adam(1e-3),
                epoch_hooks=[Validation(split), stop, WriteScalars.to_folder(tmp_path / "curves")])
  assert history["stopped_early"] and len(history["loss"]) == 2 and history["steps"] == 12
  assert history["twice_loss"] == [2 * x for x in history["loss"]]
  assert len(history["val_nll"]) == 2 and history["best_epoch"] in (0, 1)
  assert [r["epoch"] for r in stop.reports] == [1, 2]
  curves = summaries.read_scalars(tmp_path / "curves")
  assert [v for _, v in curves["loss"]] == pytest.approx(history["loss"], rel=1e-6)
  assert [s for s, _ in curves["val_nll"]] == [1, 2]


def test_fit_refuses_a_checkpoint_of_other_step_hooks(tmp_path):
  path = str(tmp_path / "ckpt")
  kwargs = dict(key=jax.random.key(0), epochs=1, batch_size=32, tx=optax.adam(1e-3),
                checkpoint_path=path)
  fit(_model(), (X, Y), **kwargs)
  from dropjax.checkpoint import CheckpointMismatchError
  with pytest.raises(CheckpointMismatchError, match="step_hooks"):
    fit(_model(), (X, Y), step_hooks=[max_norm_hook(1.0)], **kwargs)


class _Killed(Exception):
  pass


class _KillAfterFirst(EpochHook):
  def report(self, epoch, record):
    raise _Killed


def test_a_run_resumes_with_other_stateless_hooks_and_its_validation_state(tmp_path):
  path = str(tmp_path / "ckpt")
  split = type(DATA.validation)(DATA.validation.images.reshape(-1, 64), DATA.validation.labels)
  kwargs = dict(key=jax.random.key(0), epochs=3, batch_size=32, tx=optax.adam(1e-3))
  straight = _model()
  expected = fit(straight, (X, Y), epoch_hooks=[Validation(split, patience=5)], **kwargs)
  with pytest.raises(_Killed):
    fit(_model(), (X, Y), epoch_hooks=[Validation(split, patience=5), _KillAfterFirst()],
        checkpoint_path=path, **kwargs)
  resumed = _model()
  history = fit(resumed, (X, Y), checkpoint_path=path, **kwargs, epoch_hooks=[
      Validation(split, patience=5), _StopAt(99),
      WriteScalars(summaries.ScalarWriter(tmp_path / "curves"), owned=True)])
  assert history["val_nll"] == expected["val_nll"] and history["loss"] == expected["loss"]
  assert history["best_epoch"] == expected["best_epoch"]
  for a, b in zip(_leaves(nnx.state(straight)), _leaves(nnx.state(resumed)), strict=True):
    np.testing.assert_array_equal(a, b)
  # A run with early stopping refuses a checkpoint written without it, and vice versa.
  from dropjax.checkpoint import CheckpointMismatchError
  with pytest.raises(CheckpointMismatchError, match="stateful_epoch_hooks"):
    fit(_model(), (X, Y), checkpoint_path=path, **kwargs)


def test_fit_refuses_bad_arguments_naming_them():
  tx = optax.adam(1e-3)
  cases = [
      (dict(epochs=0), "epochs"), (dict(epochs=2.0), "epochs"),
      (dict(batch_size=True), "batch_size"),
      (dict(data=(X, Y[:50])), "leading sizes"),
  ]
  for overrides, word in cases:
    kwargs = dict(data=(X, Y), key=jax.random.key(0), epochs=1, batch_size=32, tx=tx)
    kwargs.update(overrides)
    with pytest.raises(ValueError, match=word):
      fit(_model(), kwargs.pop("data"), **kwargs)
  with pytest.raises(TypeError, match="max_norm"):
    max_norm_hook(True)
  assert max_norm_hook(np.float32(2.0)).settings["max_norm"] == 2.0
  with pytest.raises(ValueError, match="max_norm"):
    max_norm_hook(float("inf"))
  with pytest.raises(ValueError, match="patience"):
    Validation(DATA.validation, patience=True)
  from dropjax.train import fit_classifier
  with pytest.raises(ValueError, match="`l2`"):
    fit_classifier(_model(), DATA.train, key=jax.random.key(0), epochs=1, batch_size=32,
                   learning_rate=1e-3, l2=-1.0)


def test_a_resumed_run_under_another_schedule_or_bound_is_refused(tmp_path):
  from dropjax.checkpoint import CheckpointMismatchError
  from dropjax.train import fit_classifier
  small = type(DATA.train)(DATA.train.images[:64].reshape(64, -1), DATA.train.labels[:64])
  kwargs = dict(key=jax.random.key(0), epochs=1, batch_size=32, learning_rate=1e-3)
  for first, second in [
      (dict(max_norm=2.0), dict(max_norm=3.0)),
      (dict(rate_scale=schedules.linear_decay_schedule(1.0, 0.0, 10)),
       dict(rate_scale=schedules.linear_decay_schedule(1.0, 0.5, 10)))]:
    path = str(tmp_path / f"ckpt{len(os.listdir(tmp_path))}")
    fit_classifier(_model(), small, checkpoint_path=path, **kwargs, **first)
    with pytest.raises(CheckpointMismatchError, match="step_hooks"):
      fit_classifier(_model(), small, checkpoint_path=path, **kwargs, **second)
    fit_classifier(_model(), small, checkpoint_path=path, **kwargs, **first)  # same: resumes


def test_seeds_share_one_compiled_epoch():
  # The keys are the epoch program's inputs, not constants: a second seed finds the first
  # seed's executable in the persistent compilation cache (tests/conftest.py turns it on).
  assert jax.config.jax_compilation_cache_dir, "tests/conftest.py sets the cache directory"
  events = []

  def listen(event, **kwargs):
    events.append(event)

  def loss(model, batch, weight):
    return optax.softmax_cross_entropy_with_integer_labels(model(batch[0]), batch[1]).mean()

  # Fresh keys each run: with keys baked into the program, an earlier run's cache entry for
  # fixed keys would hide the miss. The numbers are not checked, so nothing else varies.
  first = int.from_bytes(os.urandom(4), "little") >> 1
  jax.monitoring.register_event_listener(listen)
  try:
    for seed in (first, first + 1):
      events.clear()
      fit(_model(), (X, Y), key=jax.random.key(seed), epochs=1, batch_size=48,
          tx=optax.adam(1e-3), loss=loss)
  finally:
    jax.monitoring.unregister_event_listener(listen)
  assert "/jax/compilation_cache/compile_requests_use_cache" in events
  assert "/jax/compilation_cache/cache_misses" not in events


_DATA_PARALLEL = r"""
import jax, jax.numpy as jnp, numpy as np, optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from flax import nnx
from dropjax import layers
from dropjax.data import load_digits
from dropjax.models import MLP
from dropjax.train import fit_classifier, init_train_state, model_loss_fn, cross_entropy_loss
from dropjax.train import train_epochs
assert len(jax.devices()) == 4
data = load_digits()
train = data.train._replace(images=data.train.images.reshape(len(data.train.labels), -1))
mesh = Mesh(np.asarray(jax.devices()), ("data",))
make = lambda rate: MLP(64, [32], 10, input_rate=rate, hidden_rate=rate,
                        rngs=nnx.Rngs(params=0, dropout=0))
runs = []
for m in (None, mesh):
  model = make(0.3)
  history = fit_classifier(model, train, key=jax.random.key(1), epochs=2, batch_size=64,
                           learning_rate=1e-3, mesh=m)
  runs.append((history["loss"], jax.tree.leaves(nnx.state(model, nnx.Param))))
np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-5)
for a, b in zip(runs[1][1], runs[0][1], strict=True):
  assert a.sharding.is_fully_replicated
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)

def collectives(rate):
  model = make(rate)
  model.train()
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  tx = optax.adam(1e-3)
  state = jax.device_put(init_train_state(params, tx, rest), NamedSharding(mesh, P()))
  xy = jax.device_put((jnp.asarray(train.images), jnp.asarray(train.labels)),
                      NamedSharding(mesh, P()))
  run = jax.jit(lambda s, d: train_epochs(
      s, d, keys=(jax.random.key(0), jax.random.key(1)), first_epoch=0, num_epochs=1,
      batch_size=64, loss_fn=model_loss_fn(graphdef, cross_entropy_loss), tx=tx,
      drop_remainder=True, batch_sharding=NamedSharding(mesh, P("data"))))
  hlo = run.lower(state, xy).compile().as_text()
  return {op: hlo.count(op + "(") + hlo.count(op + "-start(") for op in
          ("all-reduce", "all-gather", "all-to-all", "collective-permute", "reduce-scatter")}

with_dropout, without = collectives(0.3), collectives(0.0)
assert with_dropout["all-reduce"] > 0, with_dropout  # the gradient's mean
assert with_dropout == without, (with_dropout, without)
print("OK", with_dropout)
"""


def test_data_parallel_fit_equals_one_device_and_dropout_adds_no_collective():
  run_on_simulated_devices(_DATA_PARALLEL, 4)
