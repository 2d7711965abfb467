"""Checkpoints of pytrees as .npz files: atomic, no pickle, typed PRNG keys included.

The tree structure comes from a live template at restore time (the model and optimizer
being resumed), so only array leaves and a JSON metadata string are stored. A checkpoint
may record the settings it was trained with (`check_settings`), so that resuming it under
other settings is refused instead of silently continuing the old run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from dropjax import io


def _is_key(leaf: Any) -> bool:
  return hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def save_checkpoint(path: str, trees: dict[str, Any], metadata: dict[str, Any]) -> None:
  """Writes every leaf of every tree and ``metadata`` (JSON) to ``path`` atomically.

  The file is flushed to disk before it replaces ``path`` (`dropjax.io.atomic_open`), so a
  crash leaves either the previous checkpoint or this one.

  Args:
    path: the ``.npz`` file.
    trees: ``{name: pytree}``; leaves are arrays or typed PRNG keys.
    metadata: JSON-serialisable values stored beside the arrays.
  """
  arrays = {"__metadata__": np.asarray(json.dumps(metadata))}
  for name, tree in trees.items():
    for i, leaf in enumerate(jax.tree.leaves(tree)):
      arrays[f"{name}/{i}"] = np.asarray(jax.random.key_data(leaf) if _is_key(leaf) else leaf)
  with io.atomic_open(path, "wb") as f:
    np.savez(f, **arrays)


def read_checkpoint_metadata(path: str) -> dict[str, Any]:
  """The metadata of the checkpoint at ``path``, without reading its arrays.

  Args:
    path: a file written by `save_checkpoint`.

  Returns:
    The metadata dict.
  """
  with np.load(path, allow_pickle=False) as data:
    return json.loads(str(data["__metadata__"]))


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


def tree_signature(tree: Any) -> str:
  """A short digest of a pytree's leaf paths, shapes and dtypes.

  Two trees with the same signature can be restored into each other; the values do not
  count. Used to record which model and optimizer a checkpoint belongs to.

  Args:
    tree: any pytree (e.g. ``nnx.state(model)``).

  Returns:
    16 hex digits of a SHA-256.
  """
  # Paths, not the treedef's text: that also holds library metadata that changes between
  # versions without changing what can be restored.
  text = "".join(f"|{jax.tree_util.keystr(path)}{np.shape(leaf)}:{getattr(leaf, 'dtype', '')}"
                 for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0])
  return hashlib.sha256(text.encode()).hexdigest()[:16]


class CheckpointMismatchError(ValueError):
  """A checkpoint was written under other settings than the run trying to resume it."""


def check_settings(path: str, stored: Mapping[str, Any] | None,
                   current: Mapping[str, Any]) -> None:
  """Refuses to resume the checkpoint at ``path`` unless it was written with ``current``.

  Args:
    path: the checkpoint, for the message.
    stored: the settings recorded in it; None for a checkpoint that recorded none (written
      before settings were recorded), which is refused too: what it was trained with is
      unknown.
    current: the settings of the run that wants to resume it (JSON values).

  Raises:
    CheckpointMismatchError: naming every setting that differs, with both values.
  """
  if stored is None:
    raise CheckpointMismatchError(
        f"{path} records no training settings (written by an older dropjax), so resuming it "
        "could silently continue another run. Delete it to train from scratch, or use "
        "another checkpoint_path."
    )
  current = json.loads(json.dumps(dict(current)))  # as stored: tuples become lists
  names = sorted(set(stored) | set(current))
  differ = [n for n in names if stored.get(n) != current.get(n)]
  if differ:
    details = "; ".join(f"{n}: checkpoint {stored.get(n)!r}, this run {current.get(n)!r}"
                        for n in differ)
    raise CheckpointMismatchError(
        f"{path} was trained with other settings ({details}). Resuming would continue that "
        "run, not this one: use the same settings, another checkpoint_path, or delete it."
    )
