"""dropjax after `jax.distributed.initialize`: 2 processes on localhost, 2 CPU devices each."""

import os
import socket
import subprocess
import sys
import time

from simulated_devices import simulated_devices_env

_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "multihost_worker.py")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_shard_samples_members_and_batches_and_checkpoint_them(tmp_path):
  env = simulated_devices_env(2)
  port = str(_free_port())
  logs = [(tmp_path / f"out{i}.txt", tmp_path / f"err{i}.txt") for i in range(2)]
  workers = []
  for i, (out, err) in enumerate(logs):
    with open(out, "w") as stdout, open(err, "w") as stderr:
      workers.append(subprocess.Popen([sys.executable, _WORKER, str(i), port, str(tmp_path)],
                                      env=env, stdout=stdout, stderr=stderr))
  # Files, not pipes, so neither worker blocks on output; a worker that fails leaves the
  # other waiting for it, so stop both as soon as one fails.
  deadline = time.monotonic() + 600
  while any(w.poll() is None for w in workers) and time.monotonic() < deadline:
    if any(w.poll() not in (None, 0) for w in workers):
      break
    time.sleep(0.5)
  for worker in workers:
    if worker.poll() is None:
      worker.kill()
      worker.wait()
  for i, (worker, (out, err)) in enumerate(zip(workers, logs, strict=True)):
    assert worker.returncode == 0, f"process {i}:\n{err.read_text()[-3000:]}"
    for check in ("OK", "ENSEMBLE OK", "CHECKPOINT OK", "DATA PARALLEL OK"):
      assert f"{check} {i}" in out.read_text(), out.read_text()
