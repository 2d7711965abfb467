"""Workdir and report helpers shared by the studies."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np

from dropjax import io

# Fields that change how a run executes but not its numbers (MC samples are keyed by their
# index, training segments by their epoch), so a resumed run may change them.
EXECUTION_FIELDS = ("mc_chunk_size", "segment_epochs")


def start_workdir(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Creates ``workdir`` and records the config; refuses to resume under a different config.

  Only the `EXECUTION_FIELDS` may differ from the recorded config; the new values are kept.
  """
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, "config.json")
  current = json.loads(config.to_json_best_effort(sort_keys=True))
  if os.path.exists(path):
    with open(path) as f:
      previous = json.load(f)
    changed = sorted(k for k in set(previous) | set(current)
                     if previous.get(k) != current.get(k) and k not in EXECUTION_FIELDS)
    if changed:
      raise ValueError(
          f"{workdir} holds a run with a different config (fields {changed}); resuming would "
          "mix results. Use a new --workdir or delete the old one."
      )
  io.write_json_atomic(path, current)


def mean_se(values) -> list[float]:
  """``[mean, standard error]`` over the values (population std / sqrt(n), as the UCI
  reference code reports)."""
  values = np.asarray(values, np.float64)
  return [float(values.mean()), float(values.std() / np.sqrt(len(values)))]


def load_json(path: str) -> Any | None:
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def load_or_compute(path: str, compute: Callable[[], Any]) -> Any:
  """The JSON at ``path`` if a previous run finished it; else ``compute()``, written
  atomically there (so a resumed study skips what is done)."""
  result = load_json(path)
  if result is None:
    result = compute()
    io.write_json_atomic(path, result)
  return result


def markdown_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str, str]]
) -> str:
  """``columns`` are ``(key, header, format spec)``; a missing value prints as a dash."""
  lines = ["| " + " | ".join(h for _, h, _ in columns) + " |",
           "|" + "|".join("---" for _ in columns) + "|"]
  for row in rows:
    cells = []
    for key, _, spec in columns:
      value = row.get(key)
      cells.append("-" if value is None else format(value, spec))
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def pyplot():
  """``matplotlib.pyplot`` on the non-interactive Agg backend (imported only to plot)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def save_figure(fig, path: str) -> None:
  """Lays out ``fig``, writes it as a PNG atomically and closes it."""
  fig.tight_layout()
  tmp = path + ".tmp.png"
  fig.savefig(tmp, dpi=100)
  pyplot().close(fig)
  os.replace(tmp, path)
