"""Monte-Carlo dropout: S stochastic forward passes, vmapped and chunked.

Sample ``i`` uses the key ``fold_in(key, i)``: it depends only on ``(key, i)``, never on
how the samples are chunked.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.extend.core import Literal
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from dropjax._validation import check_key, check_mesh_axis, check_positive_int
from dropjax.layers import reseed, set_mc, stochastic_layers

Forward = Callable[[jax.Array, Any], Any]


def sample_keys(key: jax.Array, num_samples: int) -> jax.Array:
  """The per-sample keys ``fold_in(key, i)``, ``i = 0 .. num_samples - 1``."""
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(num_samples))


# The automatic chunk keeps the largest intermediate of the samples vmapped at once within
# a budget. On CPU, a cache-sized one: a batch of samples larger than the cache streams
# every intermediate through memory, which made vmapping all 100 samples of the benchmark
# MLP 1.46x slower than a loop of single forwards. On accelerators, memory is the limit.
CPU_CHUNK_BUDGET_BYTES = 8 << 20
ACCELERATOR_CHUNK_BUDGET_BYTES = 1 << 30


def _bytes(aval: Any) -> int:
  try:
    return int(np.prod(aval.shape)) * np.dtype(aval.dtype).itemsize
  except (AttributeError, TypeError):  # tokens; PRNG keys count as their key data
    data = getattr(getattr(aval.dtype, "_impl", None), "key_shape", None)
    return int(np.prod(aval.shape)) * int(np.prod(data)) * 4 if data is not None else 0


def _sub_jaxprs(eqn: Any) -> list[Any]:
  subs = []
  for param in eqn.params.values():
    for sub in param if isinstance(param, tuple | list) else (param,):
      if hasattr(sub, "eqns"):
        subs.append(sub)
      elif hasattr(sub, "jaxpr") and hasattr(sub.jaxpr, "eqns"):
        subs.append(sub.jaxpr)
  return subs


def _largest_sampled_bytes(forward: Forward, key: jax.Array, x: Any) -> int:
  """Bytes of the largest array of ``forward(key, x)`` that depends on the key.

  What does not depend on the key, vmap computes once for all samples, so it does not
  grow with the chunk. Inside a nested program (a scan, a cond, a jitted call) that takes
  the key, every array counts.
  """
  jaxpr = jax.make_jaxpr(forward)(key, x).jaxpr
  sampled = set(jaxpr.invars[:len(jax.tree.leaves(key))])
  largest = 0

  def count(eqn):  # its outputs and everything its nested programs compute
    nonlocal largest
    largest = max([largest, *(_bytes(v.aval) for v in eqn.outvars)])
    for sub in _sub_jaxprs(eqn):
      for inner in sub.eqns:
        count(inner)

  for eqn in jaxpr.eqns:
    if any(not isinstance(v, Literal) and v in sampled for v in eqn.invars):
      sampled.update(eqn.outvars)
      count(eqn)
  return largest


def automatic_chunk_size(forward: Forward, key: jax.Array, x: Any, num_samples: int) -> int:
  """The samples `mc_sample` vmaps at once when ``chunk_size`` is None.

  As many as keep the largest intermediate of one sample's forward pass that depends on
  the key (what does not, vmap computes once), times the chunk, within
  `CPU_CHUNK_BUDGET_BYTES` on CPU (a cache-sized working set) or
  `ACCELERATOR_CHUNK_BUDGET_BYTES` elsewhere; at least 1, at most ``num_samples``.

  Args:
    forward, key, x: as for `mc_sample` (only their shapes are used).
    num_samples: S.

  Returns:
    The chunk size.
  """
  per_sample = _largest_sampled_bytes(forward, key, x)
  budget = (CPU_CHUNK_BUDGET_BYTES if jax.default_backend() == "cpu"
            else ACCELERATOR_CHUNK_BUDGET_BYTES)
  return int(min(num_samples, max(1, budget // max(per_sample, 1))))


def _local_samples(forward: Forward, keys: jax.Array, x: Any, chunk_size: int | None) -> Any:
  if chunk_size is None:
    chunk_size = automatic_chunk_size(forward, keys[0], x, keys.shape[0])
  if chunk_size >= keys.shape[0]:
    return jax.vmap(forward, in_axes=(0, None))(keys, x)
  return jax.lax.map(lambda k: forward(k, x), keys, batch_size=chunk_size)


def mc_sample(
    forward: Forward,
    key: jax.Array,
    x: Any,
    num_samples: int,
    *,
    chunk_size: int | None = None,
    devices: Sequence[jax.Device] | None = None,
    mesh: Mesh | None = None,
    sample_axis: str | None = None,
    prefix: Callable[[Any], Any] | None = None,
) -> Any:
  """Stacks ``forward(fold_in(key, i), x)`` for ``i < num_samples`` along a new axis 0.

  The deterministic part of the network before the first stochastic layer need not be
  computed S times. Without chunking, JAX's vmap batches only what depends on the keys, so
  that part is computed once automatically (``x`` is not batched). Inside a chunked loop
  that is up to XLA's loop-invariant hoisting. Pass it as ``prefix`` (and make ``forward``
  start after it) to have it computed exactly once before sampling, whatever the chunking.

  Args:
    forward: a pure stochastic function ``(key, x) -> outputs`` (e.g. `module_forward`).
    key: a PRNG key.
    x: the inputs (any pytree), shared by every sample.
    num_samples: S.
    chunk_size: at most this many samples are vmapped at once per device (bounds memory);
      None chooses it from a cache budget on CPU and a memory budget on accelerators
      (`automatic_chunk_size`); ``num_samples`` vmaps them all at once.
    devices: shard the sample axis over these devices (a one-axis ``mesh``). None: no
      sharding.
    mesh: shard the sample axis over the mesh axis ``sample_axis`` of this
      `jax.sharding.Mesh` with `jax.shard_map`. Only that axis is manual: the mesh's other
      axes stay automatic, so ``x`` and the weights may be sharded over them (a batch over
      a ``"data"`` axis, say) and XLA partitions each sample's forward pass. S is padded up
      to a multiple of the axis size; the padding samples are computed and dropped.
    sample_axis: the mesh axis of the samples; may be left out for a one-axis mesh.
    prefix: a deterministic ``x -> h`` applied once; ``forward`` then receives ``h``.

  Returns:
    ``forward``'s outputs with a leading axis of size S, sharded over ``sample_axis`` when
    S is a multiple of the axis size (else dropping the padding gathers the samples: pick
    such an S at large S).
    Sample i's randomness depends only on ``(key, i)``, never on ``chunk_size``, the mesh
    or how ``x`` is sharded (JAX's partitionable threefry draws the same bits in every
    layout).

  Example:
    >>> import jax, jax.numpy as jnp, dropjax
    >>> from dropjax.mc import mc_sample
    >>> f = lambda k, x: dropjax.dropout(k, x, 0.5)
    >>> mc_sample(f, jax.random.key(0), jnp.ones(3), 10, chunk_size=4).shape
    (10, 3)
  """
  check_positive_int(num_samples, "num_samples")
  check_positive_int(chunk_size, "chunk_size", allow_none=True)
  check_key(key)
  if isinstance(forward, nnx.Module) or not callable(forward):
    raise TypeError(f"`forward` must be a function (key, x) -> outputs; got "
                    f"{type(forward).__name__}. For an NNX model use module_forward(model).")
  mesh, sample_axis = _sample_mesh(devices, mesh, sample_axis)
  if prefix is not None:
    x = prefix(x)
  if mesh is None:
    return _local_samples(forward, sample_keys(key, num_samples), x, chunk_size)
  shards = mesh.shape[sample_axis]
  padded = -(-num_samples // shards) * shards
  # Only the sample axis is manual; x keeps whatever sharding it has over the other axes.
  sharded = jax.shard_map(
      lambda keys, x: _local_samples(forward, keys, x, chunk_size),
      mesh=mesh, in_specs=(P(sample_axis), P()), out_specs=P(sample_axis),
      axis_names=frozenset({sample_axis}),
  )
  out = sharded(sample_keys(key, padded), x)
  return jax.tree.map(lambda a: a[:num_samples], out)


def _sample_mesh(devices: Sequence[jax.Device] | None, mesh: Mesh | None,
                 sample_axis: str | None) -> tuple[Mesh | None, str | None]:
  """The mesh and axis that `mc_sample`'s sharding arguments name (None: no sharding)."""
  if devices is not None and mesh is not None:
    raise ValueError("Pass `devices` or `mesh`, not both: `devices` builds a one-axis mesh.")
  if devices is None:
    return check_mesh_axis(mesh, sample_axis, "sample_axis")
  if sample_axis is not None:
    raise ValueError("`sample_axis` names an axis of `mesh`; with `devices` the samples are "
                     "sharded over all of them.")
  return (Mesh(np.asarray(devices), ("samples",)), "samples") if len(devices) else (None, None)


def mc_predict(
    forward: Forward,
    key: jax.Array,
    x: Any,
    num_samples: int,
    *,
    chunk_size: int | None = None,
    devices: Sequence[jax.Device] | None = None,
    mesh: Mesh | None = None,
    sample_axis: str | None = None,
) -> jax.Array:
  """The MC-dropout predictive distribution: the mean of ``softmax(forward)`` over S samples.

  Args:
    forward: ``(key, x) -> logits`` with dropout sampling on.
    key: a PRNG key.
    x: the inputs.
    num_samples: S.
    chunk_size: samples vmapped at once per device; None: automatic (see `mc_sample`).
    devices: shard the samples over these devices (see `mc_sample`).
    mesh: shard the samples over ``sample_axis`` of this mesh (see `mc_sample`).
    sample_axis: the mesh axis of the samples.

  Returns:
    Mean class probabilities, shaped like the logits.
  """
  probs = mc_sample(lambda k, x: jax.nn.softmax(forward(k, x)), key, x, num_samples,
                    chunk_size=chunk_size, devices=devices, mesh=mesh,
                    sample_axis=sample_axis)
  return jnp.mean(probs, axis=0)


def mc_running_means(
    forward: Forward,
    key: jax.Array,
    x: Any,
    num_samples: Sequence[int],
    *,
    chunk_size: int | None = None,
) -> Any:
  """The MC means of the first k samples, for every k of ``num_samples``, in one pass.

  How many samples does a prediction need? This answers it for k up to thousands without
  holding the samples: sample i is the same ``forward(fold_in(key, i), x)`` as in
  `mc_sample`, and the samples are summed ``chunk_size`` at a time. Entry j equals
  ``mc_sample(forward, key, x, max(num_samples))[:num_samples[j]].mean(0)`` up to float
  summation order.

  Args:
    forward: a pure stochastic function ``(key, x) -> outputs`` (for class probabilities,
      ``lambda k, x: jax.nn.softmax(module_forward(model)(k, x))``).
    key: a PRNG key.
    x: the inputs (any pytree), shared by every sample.
    num_samples: the sample counts k, strictly increasing positive ints (static).
    chunk_size: samples vmapped at once (bounds memory); None: one segment between two
      counts at once (unlike `mc_sample`, no automatic choice).

  Returns:
    ``forward``'s outputs with a leading axis of size ``len(num_samples)``: the mean of
    samples ``0 .. k - 1`` for each k.

  Example:
    >>> import jax, jax.numpy as jnp, dropjax
    >>> from dropjax.mc import mc_running_means
    >>> f = lambda k, x: dropjax.dropout(k, x, 0.5)
    >>> mc_running_means(f, jax.random.key(0), jnp.ones(3), (1, 10, 100), chunk_size=8).shape
    (3, 3)
  """
  counts = tuple(num_samples)
  if not counts:
    raise ValueError("num_samples must hold at least one sample count; got ().")
  for k in counts:
    check_positive_int(k, "num_samples")
  if any(b <= a for a, b in itertools.pairwise(counts)):
    raise ValueError(f"num_samples must be strictly increasing; got {counts}.")
  check_positive_int(chunk_size, "chunk_size", allow_none=True)
  check_key(key)
  if isinstance(forward, nnx.Module) or not callable(forward):
    raise TypeError(f"`forward` must be a function (key, x) -> outputs; got "
                    f"{type(forward).__name__}. For an NNX model use module_forward(model).")
  shapes = jax.eval_shape(forward, key, x)
  # Sums in at least float32 (bfloat16 outputs would lose the later samples).
  total = jax.tree.map(
      lambda s: jnp.zeros(s.shape, jnp.promote_types(s.dtype, jnp.float32)), shapes)
  means, start = [], 0
  for k in counts:
    width = k - start if chunk_size is None else min(chunk_size, k - start)
    steps = -(-(k - start) // width)

    # Samples past k in the last chunk are computed and weighted 0: at most width - 1
    # wasted passes per count, and sample i's key never depends on the chunking.
    def chunk_sum(carry, step, start=start, k=k, width=width):
      index = start + step * width + jnp.arange(width)
      outs = jax.vmap(forward, in_axes=(0, None))(
          jax.vmap(lambda i: jax.random.fold_in(key, i))(index), x)
      used = index < k

      def add(c, o):
        # A select, not a product with 0: an inf or nan past k must not reach the sum.
        mask = used.reshape((-1,) + (1,) * (o.ndim - 1))
        return c + jnp.sum(jnp.where(mask, o.astype(c.dtype), 0), axis=0)

      return jax.tree.map(add, carry, outs), None

    total, _ = jax.lax.scan(chunk_sum, total, jnp.arange(steps))
    means.append(jax.tree.map(lambda t, k=k: t / k, total))
    start = k
  return jax.tree.map(lambda *m: jnp.stack(m), *means)


def module_forward(model: nnx.Module, *, require_stochastic: bool = True) -> ModuleForward:
  """A pure ``(key, x) -> model(x)`` with dropout sampling on and everything else in eval mode.

  The model is copied and put in ``eval()`` (BatchNorm uses its running statistics) with
  every dropout layer sampling: dropjax layers in MC mode and ``flax.nnx.Dropout`` layers
  with ``deterministic=False`` (a Flax layer built without ``rngs`` gets a stream here).
  Each call reseeds the copy's dropout layers from ``key`` (`dropjax.layers.reseed`), so
  the function can be vmapped over the per-sample keys of `mc_sample`. The original model
  is left untouched.

  Args:
    model: any NNX model with at least one dropout layer.
    require_stochastic: refuse a model whose samples would all be equal (no dropout layer,
      or only rate-0 ones). Pass False to treat such a model as its own MC mean (a
      no-dropout baseline in a comparison, say).

  Returns:
    ``forward(key, x)``, a `ModuleForward`: pass it to a jitted function as an argument
    (``jax.jit(lambda f, k, x: mc_predict(f, k, x, S))(forward, key, x)``) so the weights
    are inputs rather than constants, and one program serves every model of an
    architecture.

  Raises:
    ValueError: the model has no dropout layer that samples, and ``require_stochastic``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> from dropjax.mc import mc_sample, module_forward
    >>> model = nnx.Sequential(nnx.Linear(3, 8, rngs=nnx.Rngs(0)), nnx.Dropout(0.5))
    >>> samples = mc_sample(module_forward(model), jax.random.key(1), jnp.ones((2, 3)), 8)
    >>> bool(samples.std(0).max() > 0)  # Flax's own Dropout samples too
    True
  """
  model = nnx.clone(model)
  model.eval()
  set_mc(model, raise_if_not_found=False)
  for _, module in nnx.iter_modules(model):
    if isinstance(module, nnx.Dropout) and module.rngs is None:
      # Replaced per call by `reseed`; only its presence matters here.
      module.rngs = nnx.RngStream(jax.random.key(0), tag=module.rng_collection)
  if require_stochastic:
    sampling = [m for m in stochastic_layers(model) if m.sampling and m.rate != 0.0]
    if not sampling:
      found = [f"{m.path} ({m.layer}, rate {m.rate})" for m in stochastic_layers(model)]
      raise ValueError(
          f"module_forward: {type(model).__name__} has no dropout layer that samples "
          f"(found: {', '.join(found) or 'none'}), so every MC sample would be the same "
          "prediction. Add dropout (dropjax.layers, or flax.nnx.Dropout), or pass "
          "require_stochastic=False to use the model as its own MC mean."
      )
  return ModuleForward(*nnx.split(model))


@jax.tree_util.register_pytree_node_class
class ModuleForward:
  """`module_forward`'s ``forward(key, x)``: a pytree whose leaves are the model's state.

  Passed as an argument to a jitted function, the weights are the program's inputs, not
  constants folded into it, so every model of one architecture shares one compiled program
  (and compiles as fast as an empty one would). Closed over, it works too, at one
  compilation per model.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> from dropjax.mc import mc_predict, module_forward
    >>> model = nnx.Sequential(nnx.Linear(3, 4, rngs=nnx.Rngs(0)), nnx.Dropout(0.5))
    >>> predict = jax.jit(lambda f, k, x: mc_predict(f, k, x, 8))
    >>> predict(module_forward(model), jax.random.key(1), jnp.ones((2, 3))).shape
    (2, 4)
  """

  def __init__(self, graphdef: nnx.GraphDef, state: nnx.State):
    self.graphdef, self.state = graphdef, state

  def __call__(self, key: jax.Array, x: Any) -> Any:
    model = nnx.merge(self.graphdef, self.state, copy=True)
    reseed(model, key)
    return model(x)

  def tree_flatten(self):
    return (self.state,), self.graphdef

  @classmethod
  def tree_unflatten(cls, graphdef, children):
    return cls(graphdef, *children)
