"""Runs test scripts in a fresh Python with simulated CPU devices (the device count is fixed
when JAX starts, so a test needing 4 devices cannot get them in the pytest process)."""

import os
import subprocess
import sys


def simulated_devices_env(count: int) -> dict[str, str]:
  """The environment of a process with ``count`` simulated CPU devices."""
  # Keeps the suite's other XLA flags (tests/conftest.py).
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  flags.append(f"--xla_force_host_platform_device_count={count}")
  return dict(os.environ, XLA_FLAGS=" ".join(flags), JAX_PLATFORMS="cpu")


def run_on_simulated_devices(script: str, count: int = 4, timeout: float = 600) -> str:
  """Runs ``script`` (``python -c``) on ``count`` devices; it must exit 0 and print "OK".

  Returns:
    Its standard output.
  """
  result = subprocess.run([sys.executable, "-c", script], env=simulated_devices_env(count),
                          capture_output=True, text=True, timeout=timeout)
  assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]
  return result.stdout
