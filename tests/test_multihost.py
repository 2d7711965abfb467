"""dropjax after `jax.distributed.initialize`: 2 processes on localhost, 2 CPU devices each."""

import os
import socket
import subprocess
import sys

_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "multihost_worker.py")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_shard_samples_members_and_batches_as_one_device_would():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
             JAX_PLATFORMS="cpu")
  port = str(_free_port())
  workers = [subprocess.Popen([sys.executable, _WORKER, str(i), port], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
  try:  # a worker that fails leaves the other waiting for it: kill both
    outputs = [(*worker.communicate(timeout=600), worker.returncode) for worker in workers]
  finally:
    for worker in workers:
      if worker.poll() is None:
        worker.kill()
  for i, (out, err, code) in enumerate(outputs):
    assert code == 0, f"process {i}:\n{err[-3000:]}"
    for check in ("OK", "ENSEMBLE OK", "DATA PARALLEL OK"):
      assert f"{check} {i}" in out, out
