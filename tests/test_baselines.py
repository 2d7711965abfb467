"""Temperature scaling and vmapped ensembles (the calibration study's baselines)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from simulated_devices import run_on_simulated_devices

from dropjax.calibration import fit_temperature, temperature_nll
from dropjax.data import load_digits
from dropjax.models import MLP, LeNet5
from dropjax.train import ensemble_member, fit_classifier, fit_ensemble, predict_probabilities


def test_temperature_scaling_recovers_the_overconfidence_factor():
  logits = 1.5 * jax.random.normal(jax.random.key(0), (40_000, 5))
  labels = jax.random.categorical(jax.random.key(1), logits)  # calibrated at T = 1
  t = float(fit_temperature(3.0 * logits, labels))
  assert abs(t - 3.0) < 0.1
  # It is the minimiser: a dense grid finds nothing better.
  grid = np.linspace(0.5 * t, 1.5 * t, 201)
  nll = [float(temperature_nll(3.0 * logits, labels, g)) for g in grid]
  assert float(temperature_nll(3.0 * logits, labels, t)) <= min(nll) + 1e-6


@pytest.mark.parametrize("vectorize", [True, False], ids=["vmapped", "mapped"])
def test_ensemble_members_equal_separate_runs(vectorize):
  data = load_digits()
  make = lambda rngs: MLP(64, [32], 10, input_rate=0.1, hidden_rate=0.3, rngs=rngs)
  keys = jax.random.split(jax.random.key(0), 3)
  graphdef, states, history = fit_ensemble(make, data.train, keys=keys, epochs=3, batch_size=64,
                                           learning_rate=1e-3, vectorize=vectorize)
  assert history["loss"].shape == (3, 3)
  probs = []
  for k in range(3):
    init_key, train_key = jax.random.split(keys[k])
    single = make(nnx.Rngs(params=init_key, dropout=0))
    fit_classifier(single, data.train, key=train_key, epochs=3, batch_size=64,
                   learning_rate=1e-3)
    member = predict_probabilities(ensemble_member(graphdef, states, k), data.test.images)
    alone = predict_probabilities(single, data.test.images)
    # Same keys, batches and masks; only batched-matmul rounding differs.
    np.testing.assert_allclose(member, alone, atol=1e-4)
    probs.append(member)
  assert not np.allclose(probs[0], probs[1], atol=1e-3)  # members differ
  assert bool(jnp.all(jnp.isfinite(jnp.stack(probs))))


def test_mapped_convolutional_ensemble_equals_separate_runs():
  data = load_digits()
  make = lambda rngs: LeNet5(10, spatial_size=8, dropout_rate=0.3, rngs=rngs)
  keys = jax.random.split(jax.random.key(1), 2)
  graphdef, states, _ = fit_ensemble(make, data.train, keys=keys, epochs=2, batch_size=64,
                                     learning_rate=1e-3, vectorize=False)
  for k in range(2):
    init_key, train_key = jax.random.split(keys[k])
    single = make(nnx.Rngs(params=init_key, dropout=0))
    fit_classifier(single, data.train, key=train_key, epochs=2, batch_size=64,
                   learning_rate=1e-3)
    np.testing.assert_allclose(
        predict_probabilities(ensemble_member(graphdef, states, k), data.test.images),
        predict_probabilities(single, data.test.images), atol=1e-4)


_SHARDED_ENSEMBLE = r"""
import jax, numpy as np
from jax.sharding import Mesh
from dropjax.data import load_digits
from dropjax.models import MLP
from dropjax.train import fit_ensemble
assert len(jax.devices()) == 4
data = load_digits()
make = lambda rngs: MLP(64, [32], 10, input_rate=0.1, hidden_rate=0.3, rngs=rngs)
keys = jax.random.split(jax.random.key(0), 4)
for vectorize in (True, False):
  runs = []
  for mesh in (None, Mesh(np.asarray(jax.devices()), ("members",)),
               Mesh(np.asarray(jax.devices()).reshape(2, 2), ("members", "data"))):
    _, (params, _), history = fit_ensemble(
        make, data.train, keys=keys, epochs=2, batch_size=64, learning_rate=1e-3,
        vectorize=vectorize, mesh=mesh, member_axis=None if mesh is None else "members")
    if mesh is not None:
      assert all(leaf.sharding.spec[0] == "members" for leaf in jax.tree.leaves(params))
    runs.append((jax.tree.leaves(params), np.asarray(history["loss"])))
  for leaves, loss in runs[1:]:
    # Same keys, batches and masks per member; rounding may differ with the local batch.
    np.testing.assert_allclose(loss, runs[0][1], rtol=1e-5)
    for a, b in zip(leaves, runs[0][0], strict=True):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
print("OK")
"""


def test_ensemble_members_sharded_over_a_mesh_equal_one_device():
  run_on_simulated_devices(_SHARDED_ENSEMBLE, 4)
