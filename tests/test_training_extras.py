"""Checkpoint/resume, early stopping, vmapped hyper-parameters, sequence and attention models."""

import os
import signal
import stat
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from simulated_devices import run_on_simulated_devices

from dropjax import checkpoint, io, layers
from dropjax.data import load_digits
from dropjax.models import MLP, SequenceClassifier, TransformerClassifier
from dropjax.train import ensemble_member, fit_classifier, fit_ensemble, predict_probabilities

DATA = load_digits()


def _params(model):
  return jax.tree.leaves(nnx.state(model, nnx.Param))


def _mlp(rngs=None):
  return MLP(64, [32], 10, input_rate=0.1, hidden_rate=0.3,
             rngs=rngs or nnx.Rngs(params=0, dropout=1))


class Killed(Exception):
  pass


_KWARGS = "dict(key=jax.random.key(3), epochs=4, batch_size=64, learning_rate=1e-3)"

# Trains with a checkpoint and SIGKILLs itself after epoch 2's save: no clean-up runs.
_TRAIN_UNTIL_KILLED = f"""
import os, signal, sys
import jax
from flax import nnx
from dropjax.data import load_digits
from dropjax.models import MLP
from dropjax.train import fit_classifier
data = load_digits()
model = MLP(64, [32], 10, input_rate=0.1, hidden_rate=0.3, rngs=nnx.Rngs(params=0, dropout=1))
def die(stats):
  if stats["epoch"] == 2:
    os.kill(os.getpid(), signal.SIGKILL)
fit_classifier(model, data.train, validation=data.validation, checkpoint_path=sys.argv[1],
               progress=die, **{_KWARGS})
"""


def test_killed_and_resumed_run_ends_with_the_same_numbers(tmp_path):
  kwargs = eval(_KWARGS)
  straight = _mlp()
  history = fit_classifier(straight, DATA.train, validation=DATA.validation, **kwargs)

  path = str(tmp_path / "ckpt")
  killed = subprocess.run([sys.executable, "-c", _TRAIN_UNTIL_KILLED, path],
                          env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True)
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
  assert checkpoint.read_checkpoint_metadata(path)["epoch"] == 2
  resumed = _mlp(nnx.Rngs(params=0, dropout=1))  # a fresh process rebuilds the model
  resumed_history = fit_classifier(resumed, DATA.train, validation=DATA.validation,
                                   checkpoint_path=path, **kwargs)
  for a, b in zip(_params(straight), _params(resumed), strict=True):
    np.testing.assert_array_equal(a, b)
  assert resumed_history["loss"] == history["loss"]
  assert resumed_history["val_nll"] == history["val_nll"]


def test_a_concrete_run_resumes_under_its_own_settings_only(tmp_path):
  small = type(DATA.train)(DATA.train.images[:64], DATA.train.labels[:64])
  make = lambda weight_regularizer=1e-4: MLP(
      64, [16], 10, variant="concrete", weight_regularizer=weight_regularizer,
      dropout_regularizer=1e-3, rngs=nnx.Rngs(params=0, dropout=1))
  kwargs = dict(key=jax.random.key(5), epochs=2, batch_size=32, learning_rate=1e-3)
  straight = make()
  fit_classifier(straight, small, **kwargs)
  path = str(tmp_path / "ckpt")

  def kill_after_one(stats):
    raise Killed

  with pytest.raises(Killed):
    fit_classifier(make(), small, checkpoint_path=path, progress=kill_after_one, **kwargs)
  meta = checkpoint.read_checkpoint_metadata(path)
  assert meta["settings"]["learning_rate"] == 1e-3 and meta["settings"]["epochs"] == 2
  # A threefry key records no generator, as checkpoints did before the setting existed.
  assert "key_impl" not in meta["settings"]
  assert meta["penalty"] != 0  # the concrete penalty (negative here: its entropy term)
  with pytest.raises(checkpoint.CheckpointMismatchError, match="penalty coefficients"):
    fit_classifier(make(1e-3), small, checkpoint_path=path, **kwargs)
  resumed = make()
  fit_classifier(resumed, small, checkpoint_path=path, **kwargs)
  for a, b in zip(_params(straight), _params(resumed), strict=True):
    np.testing.assert_array_equal(a, b)


def test_early_stopping_restores_the_best_epoch():
  model = MLP(64, [128], 10, input_rate=0.0, hidden_rate=0.0, rngs=nnx.Rngs(0))
  small = type(DATA.train)(DATA.train.images[:60], DATA.train.labels[:60])  # overfits fast
  history = fit_classifier(model, small, key=jax.random.key(0), epochs=200, batch_size=20,
                           learning_rate=1e-2, validation=DATA.validation, patience=5)
  assert history["stopped_early"] and len(history["loss"]) < 200
  best = history["best_epoch"]
  assert len(history["val_nll"]) == best + 6
  assert history["val_nll"][best] == min(history["val_nll"])
  model.eval()
  logits = model(jnp.asarray(DATA.validation.images))
  import optax

  nll = optax.softmax_cross_entropy_with_integer_labels(logits, DATA.validation.labels).mean()
  np.testing.assert_allclose(float(nll), history["val_nll"][best], rtol=1e-5)
  with pytest.raises(ValueError, match="`patience`"):
    fit_classifier(model, small, key=jax.random.key(0), epochs=1, batch_size=20,
                   learning_rate=1e-2, patience=3)


def test_one_program_trains_models_with_different_rates():
  rates = jnp.array([0.0, 0.3, 0.6])
  make = lambda rngs, rate: MLP(64, [32], 10, input_rate=rate, hidden_rate=rate, rngs=rngs)
  keys = jax.random.split(jax.random.key(1), 3)
  graphdef, states, _ = fit_ensemble(make, DATA.train, keys=keys, hparams={"rate": rates},
                                     epochs=2, batch_size=64, learning_rate=1e-3)
  for k, rate in enumerate([0.0, 0.3, 0.6]):
    member = ensemble_member(graphdef, states, k)
    assert float(layers.value_of(member.drops[1].rate)) == pytest.approx(rate)
    init_key, train_key = jax.random.split(keys[k])
    alone = make(nnx.Rngs(params=init_key, dropout=0), jnp.float32(rate))
    fit_classifier(alone, DATA.train, key=train_key, epochs=2, batch_size=64, learning_rate=1e-3)
    np.testing.assert_allclose(predict_probabilities(member, DATA.test.images),
                               predict_probabilities(alone, DATA.test.images), atol=1e-4)
  with pytest.raises(ValueError, match=r"hparams\['rate'\] must have shape \(3,\)"):
    fit_ensemble(make, DATA.train, keys=keys, hparams={"rate": rates[:2]}, epochs=1,
                 batch_size=64, learning_rate=1e-3)


@pytest.mark.parametrize("make", [
    lambda r: SequenceClassifier(8, 16, 10, mode="variational", rngs=r),
    lambda r: SequenceClassifier(8, 16, 10, mode="naive", rngs=r),
    lambda r: TransformerClassifier(8, 10, max_length=8, features=16, num_heads=2, rngs=r),
    lambda r: MLP(64, [32, 32], 10, batch_norm="after_dropout", rngs=r),
    lambda r: MLP(64, [32, 32], 10, batch_norm="before_dropout", rngs=r),
], ids=["lstm-variational", "lstm-naive", "transformer", "bn-after-dropout",
        "bn-before-dropout"])
def test_one_training_step_of_the_sequence_attention_and_batchnorm_models(make):
  model = make(nnx.Rngs(params=0, dropout=1))
  stochastic = [m for _, m in nnx.iter_modules(model) if isinstance(m, layers.StochasticLayer)]
  assert stochastic
  before = jax.tree.map(jnp.copy, nnx.state(model, nnx.Param))
  batch = type(DATA.train)(DATA.train.images[:32], DATA.train.labels[:32])
  history = fit_classifier(model, batch, key=jax.random.key(0), epochs=1, batch_size=32,
                           learning_rate=1e-2)
  assert np.isfinite(history["loss"][0])
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), before, nnx.state(model, nnx.Param))
  assert all(jax.tree.leaves(changed))


def test_batchnorm_placements():
  after = MLP(64, [32, 32], 10, batch_norm="after_dropout", rngs=nnx.Rngs(0))
  before = MLP(64, [32, 32], 10, batch_norm="before_dropout", rngs=nnx.Rngs(0))
  assert [type(d).__name__ for d in after.drops] == ["Dropout"] * 3
  # Dropout only after the last BatchNorm, before the output layer.
  assert [type(d).__name__ for d in before.drops] == ["Identity", "Identity", "Dropout"]
  with pytest.raises(ValueError, match="`batch_norm` must be one of"):
    MLP(64, [32], 10, batch_norm="middle", rngs=nnx.Rngs(0))


def test_checkpoint_roundtrip_with_typed_keys_and_shape_check(tmp_path):
  tree = {"w": jnp.arange(6.0).reshape(2, 3), "key": jax.random.key(7, impl="rbg")}
  path = str(tmp_path / "c")
  checkpoint.save_checkpoint(path, {"t": tree}, {"epoch": 3})
  trees, meta = checkpoint.load_checkpoint(path, {"t": tree})
  assert meta == {"epoch": 3}
  np.testing.assert_array_equal(trees["t"]["w"], tree["w"])
  np.testing.assert_array_equal(jax.random.key_data(trees["t"]["key"]),
                                jax.random.key_data(tree["key"]))
  with pytest.raises(ValueError, match="belongs to another model"):
    checkpoint.load_checkpoint(path, {"t": {"w": jnp.zeros((3, 3)), "key": tree["key"]}})


_RESHARD = r"""
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from dropjax import checkpoint
assert len(jax.devices()) == 4
def tree_on(devices):
  mesh = Mesh(np.asarray(devices), ("members",))
  members = NamedSharding(mesh, P("members"))
  return {"w": jax.device_put(jnp.arange(32.0).reshape(8, 4), members),
          "b": jax.device_put(jnp.arange(8.0), NamedSharding(mesh, P())),
          "keys": jax.device_put(jax.random.split(jax.random.key(3), 8), members)}
saved = tree_on(jax.devices())
checkpoint.save_checkpoint(PATH, {"t": saved}, {"epoch": 1})
for devices in (jax.devices()[:2], jax.devices()[:1]):
  template = jax.tree.map(jnp.zeros_like, tree_on(devices))
  template["keys"] = tree_on(devices)["keys"]
  trees, _ = checkpoint.load_checkpoint(PATH, {"t": template})
  for name in saved:
    restored = trees["t"][name]
    # Restored onto the template's devices and layout, with the saved values.
    assert restored.sharding == template[name].sharding, (name, restored.sharding)
    want, got = saved[name], restored
    if name == "keys":
      want, got = jax.random.key_data(want), jax.random.key_data(got)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
print("OK")
"""


def test_a_checkpoint_saved_on_four_devices_restores_onto_two_and_one(tmp_path):
  run_on_simulated_devices(_RESHARD.replace("PATH", repr(str(tmp_path / "c"))), 4)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_result_files_and_checkpoints_get_the_umask_permissions(tmp_path, umask, mode):
  old = os.umask(umask)
  try:
    io.write_json_atomic(tmp_path / "r.json", {"a": 1})
    for epoch in range(2):  # the second save replaces the first
      checkpoint.save_checkpoint(str(tmp_path / "c"), {"t": {"w": jnp.ones(2)}}, {"e": epoch})
  finally:
    os.umask(old)
  assert stat.S_IMODE(os.stat(tmp_path / "r.json").st_mode) == mode
  for folder, dirs, files in os.walk(tmp_path / "c"):
    for name in files:
      assert stat.S_IMODE(os.stat(os.path.join(folder, name)).st_mode) == mode, name
    for name in dirs:
      assert stat.S_IMODE(os.stat(os.path.join(folder, name)).st_mode) == 0o777 & ~umask, name
  assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "r.json"]
  assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["1"]  # one step, no temp left
  assert checkpoint.read_checkpoint_metadata(str(tmp_path / "c")) == {"e": 1}


def test_checkpoints_restore_by_leaf_name_not_position(tmp_path):
  path = str(tmp_path / "c")
  checkpoint.save_checkpoint(path, {"t": {"a": jnp.zeros(3), "b": jnp.ones(3)}}, {})
  # Same shapes, one leaf renamed: by position it would load; by name it is refused.
  renamed = r"missing from the checkpoint .*'c'.*not in the model .*'b'"
  with pytest.raises(ValueError, match=renamed):
    checkpoint.load_checkpoint(path, {"t": {"a": jnp.zeros(3), "c": jnp.zeros(3)}})
  with pytest.raises(ValueError, match="holds the trees"):
    checkpoint.load_checkpoint(path, {"u": {"a": jnp.zeros(3)}})
  trees, _ = checkpoint.load_checkpoint(path, {"t": {"b": jnp.zeros(3), "a": jnp.zeros(3)}})
  np.testing.assert_array_equal(trees["t"]["b"], np.ones(3))


def test_an_older_npz_checkpoint_is_refused_with_the_way_out(tmp_path):
  path = tmp_path / "ckpt.npz"
  np.savez(path, w=np.ones(2))
  for call in (lambda: checkpoint.checkpoint_exists(str(path)),
               lambda: checkpoint.load_checkpoint(str(path), {"t": {"w": jnp.ones(2)}})):
    with pytest.raises(ValueError, match=r"older \.npz format.*Delete it"):
      call()


_SAVE_FOREVER = """
import sys
import jax.numpy as jnp
from dropjax import checkpoint
for i in range(10_000):
  checkpoint.save_checkpoint(sys.argv[1], {"t": {"w": jnp.full((256, 1024), float(i))}}, {"i": i})
  print(i, flush=True)
"""


@pytest.mark.parametrize("delay", [0.0, 0.013, 0.029])
def test_a_save_killed_at_any_moment_leaves_a_whole_checkpoint(tmp_path, delay):
  """SIGKILL during a stream of saves: what is left is one complete, consistent save."""
  path = str(tmp_path / "c")
  child = subprocess.Popen([sys.executable, "-c", _SAVE_FOREVER, path], stdout=subprocess.PIPE,
                           text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  for _ in range(3):  # a few saves finished, so the kill lands between or inside saves
    assert child.stdout.readline(), "the saving process died"
  time.sleep(delay)
  child.send_signal(signal.SIGKILL)
  child.wait()
  child.stdout.close()
  trees, meta = checkpoint.load_checkpoint(path, {"t": {"w": jnp.zeros((256, 1024))}})
  assert meta["i"] >= 2
  np.testing.assert_array_equal(trees["t"]["w"], np.full((256, 1024), float(meta["i"])))


def test_a_failed_write_leaves_the_old_file(tmp_path):
  io.write_text_atomic(tmp_path / "r.txt", "old")
  with pytest.raises(TypeError):
    io.write_text_atomic(tmp_path / "r.txt", 3)
  assert (tmp_path / "r.txt").read_text() == "old" and len(list(tmp_path.iterdir())) == 1


def test_l2_penalty_counts_kernels_only():
  from dropjax.train import classification_loss, kernel_l2

  model = MLP(64, [32], 10, input_rate=0.0, hidden_rate=0.0, rngs=nnx.Rngs(0))
  expected = sum(float(jnp.sum(d.kernel[...] ** 2)) for d in model.denses)
  np.testing.assert_allclose(kernel_l2(model), expected, rtol=1e-6)
  x, y = jnp.asarray(DATA.test.images[:8]), jnp.asarray(DATA.test.labels[:8])
  diff = classification_loss(model, x, y, l2=0.5) - classification_loss(model, x, y)
  np.testing.assert_allclose(diff, 0.5 * expected, rtol=1e-5)


@pytest.mark.parametrize("placement", ["after_dropout", "before_dropout"])
def test_convnet_batchnorm_placements_train(placement):
  from dropjax.models import ConvNet

  model = ConvNet(1, 10, spatial_size=8, variant="spatial", channels=(8, 8), dense_features=16,
                  batch_norm=placement, rngs=nnx.Rngs(params=0, dropout=1))
  feature_drops = [type(d).__name__ for d in model.drops]
  assert feature_drops[1] == ("SpatialDropout" if placement == "after_dropout" else "Identity")
  batch = type(DATA.train)(DATA.train.images[:32], DATA.train.labels[:32])
  history = fit_classifier(model, batch, key=jax.random.key(0), epochs=1, batch_size=32,
                           learning_rate=1e-2)
  assert np.isfinite(history["loss"][0])
