"""Checkpoints of pytrees through orbax-checkpoint: atomic, restored by name, keys included.

A checkpoint is a directory managed by `orbax.checkpoint.CheckpointManager`: each save
writes a new step directory, which orbax finalises by renaming it into place, before the
previous step is removed, so a crash at any moment leaves one complete checkpoint. Leaves
are stored under their tree paths (``jax.tree_util.keystr``), and restoring matches them
by those names, never by position: a checkpoint of another model is refused with the
names that differ instead of loading its arrays into the wrong places. Typed PRNG keys are
stored as their key data and rewrapped with the template's implementation. A checkpoint
may record the settings it was trained with (`check_settings`), so that resuming it under
other settings is refused instead of silently continuing the old run.

Sharded state saves as it is: orbax writes each array's shards from the processes that
hold them, so a state spread over many devices or hosts (after `jax.distributed.initialize`;
every process calls `save_checkpoint` with the same path) needs no gathering. Restoring
places each leaf with the sharding of its template leaf when that leaf was placed (is
committed), which may span another number of devices than the saved one: save on 8
devices, resume on 2 or on one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

# Each tree's leaves (name and shape, in storage order), stored in the metadata beside the
# caller's own.
_LEAVES = "__leaves__"


def _is_key(leaf: Any) -> bool:
  return hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _named_leaves(tree: Any) -> list[tuple[str, Any]]:
  return [(jax.tree_util.keystr(path), leaf)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _manager(path: str, create: bool = False) -> ocp.CheckpointManager:
  if os.path.isfile(path):
    raise ValueError(
        f"{path} is a file: a checkpoint in the older .npz format (dropjax before orbax "
        "checkpoints). Delete it to train from scratch, or pass another path.")
  if not create and not os.path.isdir(path):
    raise FileNotFoundError(f"No checkpoint at {path}.")
  options = ocp.CheckpointManagerOptions(max_to_keep=1, create=create,
                                         enable_async_checkpointing=False)
  return ocp.CheckpointManager(os.path.abspath(path), options=options)


def checkpoint_exists(path: str) -> bool:
  """Whether ``path`` holds a complete checkpoint (a save interrupted before any finished
  leaves none).

  Args:
    path: the checkpoint directory.

  Returns:
    True when a finalised save is there.
  """
  if not os.path.exists(path):
    return False
  with _manager(path) as manager:
    return manager.latest_step() is not None


def _stored_value(leaf: Any) -> Any:
  """What is written for a leaf: jax arrays as they are (sharded ones are written shard
  by shard, from whichever process holds each), typed keys as their key data."""
  if _is_key(leaf):
    return jax.random.key_data(leaf)
  return leaf if isinstance(leaf, jax.Array) else np.asarray(leaf)


def _restore_target(leaf: Any) -> jax.ShapeDtypeStruct:
  """How a template leaf is read back: its shape and dtype (key data for typed keys) and,
  for a jax array placed on purpose (committed: `jax.device_put`, a sharded result), its
  sharding, so the value lands where the live state is. An uncommitted template (a fresh
  state on the default device) gives an uncommitted value, free to enter any later
  program, a sharded one included, as the template itself was."""
  # Without a sharding orbax would restore the saved one (the devices of the run that
  # saved it): read onto one local device instead, and uncommit the value afterwards.
  one_device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  if _is_key(leaf):
    data = jax.random.key_data(leaf)
    return jax.ShapeDtypeStruct(data.shape, data.dtype,
                                sharding=data.sharding if leaf.committed else one_device)
  if isinstance(leaf, jax.Array) and leaf.committed:
    return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding)
  dtype = leaf.dtype if hasattr(leaf, "dtype") else np.result_type(leaf)
  return jax.ShapeDtypeStruct(np.shape(leaf), dtype, sharding=one_device)


def _placed_like(value: jax.Array, leaf: Any) -> jax.Array:
  """A restored value as the template leaf holds it: committed where the leaf is, else
  uncommitted on the default device (free to enter a program on any devices)."""
  if getattr(leaf, "committed", False):
    return value
  return jax.numpy.asarray(np.asarray(value))


def save_checkpoint(path: str, trees: dict[str, Any], metadata: dict[str, Any]) -> None:
  """Writes every leaf of every tree and ``metadata`` (JSON) to the directory ``path``.

  The save is complete on disk when this returns, and it replaces the previous one only
  then (orbax's finalising rename), so a crash leaves either the previous checkpoint or
  this one.

  Args:
    path: the checkpoint directory (created if absent).
    trees: ``{name: pytree}``; leaves are arrays (numpy, or jax arrays with any sharding,
      including ones spread over several processes) or typed PRNG keys.
    metadata: JSON-serialisable values stored beside the arrays.
  """
  arrays, stored = {}, {}
  for name, tree in trees.items():
    leaves = [(leaf_name, _stored_value(leaf)) for leaf_name, leaf in _named_leaves(tree)]
    stored[name] = [{"name": n, "shape": list(a.shape)} for n, a in leaves]
    arrays[name] = {f"{i:06d}": a for i, (_, a) in enumerate(leaves)}
  with _manager(path, create=True) as manager:
    latest = manager.latest_step()
    step = 0 if latest is None else latest + 1
    manager.save(step, args=ocp.args.Composite(
        arrays=ocp.args.StandardSave(arrays),
        metadata=ocp.args.JsonSave({**metadata, _LEAVES: stored})))
    manager.wait_until_finished()


def _read_metadata(manager: ocp.CheckpointManager, path: str) -> dict[str, Any]:
  step = manager.latest_step()
  if step is None:
    raise FileNotFoundError(f"{path} holds no complete checkpoint.")
  return manager.restore(step, args=ocp.args.Composite(metadata=ocp.args.JsonRestore()))[
      "metadata"]


def read_checkpoint_metadata(path: str) -> dict[str, Any]:
  """The metadata of the checkpoint at ``path``, without reading its arrays.

  Args:
    path: a directory written by `save_checkpoint`.

  Returns:
    The metadata dict, as passed to `save_checkpoint`.
  """
  with _manager(path) as manager:
    metadata = _read_metadata(manager, path)
  metadata.pop(_LEAVES)
  return metadata


def load_checkpoint(path: str, templates: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
  """Reads ``path`` into trees shaped like ``templates``, leaf by leaf name.

  Args:
    path: a directory written by `save_checkpoint`.
    templates: ``{name: pytree}`` with the structure, shapes and dtypes to restore (for
      example the live model state being resumed); their values are not used. A committed
      jax-array leaf (placed with `jax.device_put` or sharded) is restored with its
      sharding, whatever the sharding it was saved with; other leaves on the default
      device, uncommitted.

  Returns:
    ``(trees, metadata)``.

  Raises:
    ValueError: when a template's leaf names or shapes differ from the stored ones,
      naming the leaves.
  """
  with _manager(path) as manager:
    metadata = _read_metadata(manager, path)
    stored = metadata.pop(_LEAVES)
    abstract, plans = {}, {}
    for name, template in templates.items():
      if name not in stored:
        raise ValueError(f"{path} holds the trees {sorted(stored)}, not {name!r}.")
      index = {leaf["name"]: i for i, leaf in enumerate(stored[name])}
      leaves = _named_leaves(template)
      missing = [n for n, _ in leaves if n not in index]
      extra = sorted(set(index) - {n for n, _ in leaves})
      if missing or extra:
        raise ValueError(
            f"{path}: the tree {name!r} has other leaves than the model: missing from the "
            f"checkpoint {missing[:5]}, not in the model {extra[:5]}; the checkpoint belongs "
            "to another model.")
      abstract[name] = {}
      for leaf_name, leaf in leaves:
        want = _restore_target(leaf)
        have = tuple(stored[name][index[leaf_name]]["shape"])
        if have != want.shape:
          raise ValueError(f"{path}: {name}{leaf_name} has shape {have}, the model expects "
                           f"{want.shape}; the checkpoint belongs to another model.")
        abstract[name][f"{index[leaf_name]:06d}"] = want
      plans[name] = (leaves, index, jax.tree.structure(template))
    restored = manager.restore(manager.latest_step(), args=ocp.args.Composite(
        arrays=ocp.args.StandardRestore(abstract)))["arrays"]
  trees = {}
  for name, (leaves, index, treedef) in plans.items():
    values = []
    for leaf_name, leaf in leaves:
      value = restored[name][f"{index[leaf_name]:06d}"]
      value = _placed_like(value, leaf)
      values.append(jax.random.wrap_key_data(value, impl=jax.random.key_impl(leaf))
                    if _is_key(leaf) else value)
    trees[name] = jax.tree.unflatten(treedef, values)
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
  text = "".join(f"|{name}{np.shape(leaf)}:{getattr(leaf, 'dtype', '')}"
                 for name, leaf in _named_leaves(tree))
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
