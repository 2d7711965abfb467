"""What the benchmark scripts share: the machine's description and the result files."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from typing import Any

import jax

from dropjax import io


def machine_meta(start: float) -> dict[str, Any]:
  """Device, CPU count, jax version and the seconds since ``start`` (perf_counter)."""
  device = jax.devices()[0]
  return {"device": f"{device.platform}: {device.device_kind}", "cpu_count": os.cpu_count(),
          "machine": platform.machine(), "jax": jax.__version__,
          "seconds": time.perf_counter() - start}


def write_results(out: str, name: str, meta: dict[str, Any], rows: list[dict[str, Any]],
                  lines: Sequence[str]) -> None:
  """Writes ``out/name[_platform].json`` and ``.md`` atomically (CPU results keep the bare
  name, so a GPU run never overwrites them) and prints the table."""
  platform_name = jax.devices()[0].platform
  suffix = "" if platform_name == "cpu" else f"_{platform_name}"
  io.write_json_atomic(os.path.join(out, f"{name}{suffix}.json"), {"meta": meta, "rows": rows})
  io.write_text_atomic(os.path.join(out, f"{name}{suffix}.md"), "\n".join(lines) + "\n")
  print("\n".join(lines))
