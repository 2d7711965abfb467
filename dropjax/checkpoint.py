"""Checkpoints of pytrees as .npz files: atomic, no pickle, typed PRNG keys included.

The tree structure comes from a live template at restore time (the model and optimizer
being resumed), so only array leaves and a JSON metadata string are stored.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import jax
import numpy as np


def _is_key(leaf: Any) -> bool:
  return hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def save_checkpoint(path: str, trees: dict[str, Any], metadata: dict[str, Any]) -> None:
  """Writes every leaf of every tree and ``metadata`` (JSON) to ``path`` atomically."""
  arrays = {"__metadata__": np.asarray(json.dumps(metadata))}
  for name, tree in trees.items():
    for i, leaf in enumerate(jax.tree.leaves(tree)):
      arrays[f"{name}/{i}"] = np.asarray(jax.random.key_data(leaf) if _is_key(leaf) else leaf)
  folder = os.path.dirname(path) or "."
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".npz")
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **arrays)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def load_checkpoint(path: str, templates: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
  """Reads ``path`` into trees shaped like ``templates``; returns ``(trees, metadata)``."""
  with np.load(path, allow_pickle=False) as data:
    metadata = json.loads(str(data["__metadata__"]))
    trees = {}
    for name, template in templates.items():
      leaves, treedef = jax.tree.flatten(template)
      restored = []
      for i, leaf in enumerate(leaves):
        stored = data[f"{name}/{i}"]
        if _is_key(leaf):
          restored.append(jax.random.wrap_key_data(stored, impl=jax.random.key_impl(leaf)))
        else:
          if stored.shape != np.shape(leaf):
            raise ValueError(f"{path}: {name}/{i} has shape {stored.shape}, the model expects "
                             f"{np.shape(leaf)}; the checkpoint belongs to another model.")
          restored.append(jax.numpy.asarray(stored, dtype=leaf.dtype))
      trees[name] = jax.tree.unflatten(treedef, restored)
  return trees, metadata
