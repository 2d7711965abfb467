"""One process of tests/test_multihost.py: ``python multihost_worker.py PROCESS_ID PORT``.

Two of these, each with 2 simulated CPU devices, form one 4-device system through
`jax.distributed.initialize` on 127.0.0.1. Each checks the shards it holds against the same
computation on its own local device: MC samples over a mesh of both processes' devices, a
4-member ensemble sharded over them, and data-parallel training. Both then save the sharded
ensemble to one checkpoint (each process writes its own shards) and restore it onto a mesh
of their own 2 devices and onto 1 device.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import dropjax
from dropjax import checkpoint
from dropjax.data import load_digits
from dropjax.mc import mc_sample
from dropjax.models import MLP
from dropjax.train import fit_classifier, fit_ensemble


def main(pid: int, port: str, folder: str) -> None:
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=pid)
  assert jax.process_count() == 2 and len(jax.devices()) == 4 and len(jax.local_devices()) == 2
  # The first cross-process collective sets up gloo's context, which waits only 30 s for
  # the other process: set it up now, while both processes are in step.
  multihost_utils.sync_global_devices("start")
  local = jax.local_devices()[0]
  devices = np.asarray(jax.devices())

  # MC samples over both processes' devices: every mask as on one device.
  key, x = jax.random.key(0), jnp.arange(1.0, 33.0).reshape(4, 8)
  mask_only = lambda k, x: dropjax.dropout(k, x, 0.5)
  with jax.default_device(local):
    reference = np.asarray(jax.jit(lambda k, x: mc_sample(mask_only, k, x, 8))(key, x))
  mesh = Mesh(devices, ("samples",))
  x_global = jax.device_put(np.asarray(x), NamedSharding(mesh, P()))
  out = jax.jit(lambda k, x: mc_sample(mask_only, k, x, 8, mesh=mesh))(key, x_global)
  for shard in out.addressable_shards:
    np.testing.assert_array_equal(np.asarray(shard.data), reference[shard.index])
  print("OK", pid)

  # Ensemble members sharded over the processes.
  data = load_digits()
  train = data.train._replace(images=data.train.images.reshape(len(data.train.labels), -1))
  make = lambda rngs: MLP(64, [16], 10, input_rate=0.1, hidden_rate=0.3, rngs=rngs)
  keys = jax.random.split(jax.random.key(2), 4)
  settings = dict(keys=keys, epochs=1, batch_size=64, learning_rate=1e-3)
  with jax.default_device(local):
    _, (alone, _), _ = fit_ensemble(make, train, **settings)
  multihost_utils.sync_global_devices("ensemble")
  _, (params, _), _ = fit_ensemble(make, train, **settings, mesh=Mesh(devices, ("members",)))
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(alone), strict=True):
    for shard in a.addressable_shards:
      np.testing.assert_allclose(np.asarray(shard.data), np.asarray(b)[shard.index],
                                 rtol=1e-4, atol=1e-5)
  print("ENSEMBLE OK", pid)

  # The sharded members saved by both processes, restored onto other device counts.
  path = f"{folder}/ensemble"
  checkpoint.save_checkpoint(path, {"params": params}, {"members": 4})
  multihost_utils.sync_global_devices("saved")
  for restore_devices in (jax.local_devices(), [local]):
    members = NamedSharding(Mesh(np.asarray(restore_devices), ("members",)), P("members"))
    template = jax.tree.map(lambda a, s=members: jax.device_put(np.zeros(a.shape, a.dtype), s),
                            alone)
    trees, meta = checkpoint.load_checkpoint(path, {"params": template})
    assert meta == {"members": 4}
    for got, saved in zip(jax.tree.leaves(trees["params"]), jax.tree.leaves(params), strict=True):
      assert got.sharding == members and got.is_fully_addressable
      for shard in saved.addressable_shards:
        np.testing.assert_array_equal(np.asarray(got)[shard.index], np.asarray(shard.data))
  print("CHECKPOINT OK", pid)

  # Data parallelism over the processes: the gradient's all-reduce crosses them.
  def mlp():
    return MLP(64, [16], 10, input_rate=0.1, hidden_rate=0.3,
               rngs=nnx.Rngs(params=0, dropout=0))

  fit = dict(key=jax.random.key(1), epochs=1, batch_size=64, learning_rate=1e-3)
  with jax.default_device(local):
    single = mlp()
    single_history = fit_classifier(single, train, **fit)
  multihost_utils.sync_global_devices("data parallel")
  model = mlp()
  history = fit_classifier(model, train, **fit, mesh=Mesh(devices, ("data",)))
  np.testing.assert_allclose(history["loss"], single_history["loss"], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(nnx.state(model, nnx.Param)),
                  jax.tree.leaves(nnx.state(single, nnx.Param)), strict=True):
    np.testing.assert_allclose(np.asarray(a.addressable_data(0)), np.asarray(b),
                               rtol=1e-4, atol=1e-5)
  print("DATA PARALLEL OK", pid)


if __name__ == "__main__":
  main(int(sys.argv[1]), sys.argv[2], sys.argv[3])
