"""What the benchmark scripts share: the machine's description and the result files."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from dropjax import io, prng

# The tables are the studies' (experiments/reporting.py), beside the library.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments.reporting import markdown_table

# The columns of a table of timed variants with their ratio to a baseline row.
VARIANT_COLUMNS = (("benchmark", "benchmark", "s"), ("variant", "variant", "s"),
                   ("ms", "ms", ".2f"), ("ratio", "ratio", ".2f"))


def key(seed: int, impl: str) -> jax.Array:
  """A key of any generator a benchmark compares: JAX's by name (``philox2x32``, ``rbg``)
  or dropjax.prng's (``keyed_hash``). Wider than `dropjax.prng.key`, which takes only the
  generators a study config may name."""
  return jax.random.key(seed, impl=prng.IMPLS.get(impl, impl))


def median_seconds(fn: Callable[..., Any], *args: Any, repeats: int) -> float:
  """The median wall time of ``repeats`` calls of ``fn(*args)``, after one warm-up call
  (compilation); each call is waited for (`jax.block_until_ready`)."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    tic = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - tic)
  return float(np.median(times))


def machine_meta(start: float) -> dict[str, Any]:
  """Device, CPU count (and how many this process may use: benchmarks are often pinned to
  one core beside a long job), jax version and the seconds since ``start`` (perf_counter)."""
  device = jax.devices()[0]
  cpus_used = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else os.cpu_count())
  return {"device": f"{device.platform}: {device.device_kind}", "cpu_count": os.cpu_count(),
          "cpus_used": cpus_used, "machine": platform.machine(), "jax": jax.__version__,
          "seconds": time.perf_counter() - start}


def write_results(out: str, name: str, meta: dict[str, Any], rows: list[dict[str, Any]],
                  caption: str, columns: Sequence[tuple[str, str, str]]) -> None:
  """Writes ``out/name[_platform].json`` and ``.md`` atomically (CPU results keep the bare
  name, so a GPU run never overwrites them) and prints the table: ``caption``, then
  ``rows`` under ``columns`` (``(key, header, format spec)``)."""
  platform_name = jax.devices()[0].platform
  suffix = "" if platform_name == "cpu" else f"_{platform_name}"
  text = f"{caption}\n\n{markdown_table(rows, columns)}"
  io.write_json_atomic(os.path.join(out, f"{name}{suffix}.json"), {"meta": meta, "rows": rows})
  io.write_text_atomic(os.path.join(out, f"{name}{suffix}.md"), text)
  print(text, end="")
