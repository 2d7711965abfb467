"""MC sampling: per-sample keys, chunk invariance, independence, the weight-scaling limit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from simulated_devices import run_on_simulated_devices

import dropjax
from dropjax import mc
from dropjax.mc import mc_predict, mc_running_means, mc_sample, module_forward
from dropjax.models import MLP


def test_chunking_does_not_change_the_masks(monkeypatch):
  # Pure masking: every sample is bitwise identical whatever the chunk size.
  forward = lambda k, x: dropjax.dropout(k, x, 0.5)
  x = jnp.arange(1.0, 65.0).reshape(8, 8)
  key = jax.random.key(3)
  full = jax.jit(lambda k, x: mc_sample(forward, k, x, 12, chunk_size=12))(key, x)
  # A budget of 5 samples' masked arrays (8 x 8 float32): the automatic chunk is 5.
  monkeypatch.setattr(mc, "CPU_CHUNK_BUDGET_BYTES", 5 * 8 * 8 * 4)
  monkeypatch.setattr(mc, "ACCELERATOR_CHUNK_BUDGET_BYTES", 5 * 8 * 8 * 4)
  assert mc.automatic_chunk_size(forward, key, x, 12) == 5
  for chunk in (1, 5, None):
    chunked = jax.jit(lambda k, x, c=chunk: mc_sample(forward, k, x, 12, chunk_size=c))(key, x)
    np.testing.assert_array_equal(chunked, full)
  # Sample i uses fold_in(key, i) and nothing else.
  np.testing.assert_array_equal(full[7], forward(jax.random.fold_in(key, 7), x))
  assert len({np.asarray(s).tobytes() for s in full}) == 12


def test_chunking_changes_model_samples_only_by_float_reassociation():
  model = MLP(12, [32], 3, variant="dropout", input_rate=0.2, hidden_rate=0.5,
              rngs=nnx.Rngs(params=0, dropout=1))
  forward = module_forward(model)
  x = jax.random.normal(jax.random.key(0), (7, 12))
  key = jax.random.key(3)
  full = jax.jit(lambda k, x: mc_sample(forward, k, x, 10))(key, x)
  for chunk in (1, 3, 10):
    chunked = jax.jit(lambda k, x, c=chunk: mc_sample(forward, k, x, 10, chunk_size=c))(key, x)
    # XLA:CPU picks a different dot kernel per batch shape: same masks, last-ulp differences.
    np.testing.assert_allclose(chunked, full, rtol=1e-5, atol=1e-6)
  assert len({np.asarray(s).tobytes() for s in full}) == 10


def test_the_automatic_chunk_keeps_the_largest_sampled_intermediate_within_the_budget():
  if jax.default_backend() != "cpu":
    pytest.skip("the CPU budget")
  w = jnp.ones((784, 1024))
  # The largest array that depends on the key: the (1000, 1024) float32 masked product.
  forward = lambda k, x: dropjax.dropout(k, x @ w, 0.5) @ w.T
  x, key = jnp.ones((1000, 784)), jax.random.key(0)
  chunk = mc.CPU_CHUNK_BUDGET_BYTES // (1000 * 1024 * 4)
  assert chunk == 2
  assert mc.automatic_chunk_size(forward, key, x, 100) == chunk
  assert mc.automatic_chunk_size(forward, key, x, 1) == 1
  # Inside a nested program that takes the key (a scan's body), every array counts, even
  # with a scalar carry.
  scanned = lambda k, x: jax.lax.scan(lambda c, _: (c + forward(k, x).sum(), None), 0.0,
                                      length=2)[0]
  assert mc.automatic_chunk_size(scanned, key, x, 100) == chunk
  # What does not depend on the key is computed once under vmap and does not count.
  head = lambda k, x: dropjax.dropout(k, jnp.tanh(x @ w).sum(-1), 0.5)
  assert mc.automatic_chunk_size(head, key, x, 100) == 100


def test_mc_mean_of_a_linear_model_approaches_weight_scaling():
  w = jax.random.normal(jax.random.key(1), (20, 4))
  x = jax.random.normal(jax.random.key(2), (5, 20))
  forward = lambda k, x: dropjax.dropout(k, x, 0.5) @ w
  samples = mc_sample(forward, jax.random.key(4), x, 20000, chunk_size=5000)
  se = samples.std(0) / np.sqrt(samples.shape[0])
  assert bool(jnp.all(jnp.abs(samples.mean(0) - x @ w) <= 5 * se))


def test_module_forward_keeps_the_original_model_untouched_and_eval_otherwise():
  model = MLP(6, [16], 2, variant="dropout", rngs=nnx.Rngs(params=0, dropout=1))
  forward = module_forward(model)
  assert not model.drops[0].mc and not model.drops[0].deterministic
  x = jnp.ones((3, 6))
  probs = mc_predict(forward, jax.random.key(0), x, 8)
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
  # Without dropout layers the MC mean is the deterministic prediction, when asked for.
  plain = MLP(6, [16], 2, variant="none", rngs=nnx.Rngs(0))
  plain.eval()
  forward = module_forward(plain, require_stochastic=False)
  np.testing.assert_allclose(mc_predict(forward, jax.random.key(0), x, 4),
                             jax.nn.softmax(plain(x)), rtol=1e-6)
  with pytest.raises(ValueError, match="MLP has no dropout layer that samples"):
    module_forward(plain)


def test_module_forward_passes_weights_as_inputs_not_constants():
  # Two models of one architecture lower to the same program when `forward` is an argument
  # (so they share one compilation), and it computes what the closure computes, bitwise.
  x = jax.random.normal(jax.random.key(0), (5, 6))
  models = [MLP(6, [16], 3, variant="dropout", rngs=nnx.Rngs(params=s, dropout=1))
            for s in (0, 1)]
  forwards = [module_forward(m) for m in models]
  predict = jax.jit(lambda f, k, x: mc_predict(f, k, x, 4))
  texts = {predict.lower(f, jax.random.key(2), x).as_text() for f in forwards}
  assert len(texts) == 1
  for f in forwards:
    closed = jax.jit(lambda k, x, f=f: mc_predict(f, k, x, 4))(jax.random.key(2), x)
    np.testing.assert_array_equal(predict(f, jax.random.key(2), x), closed)
  leaves = jax.tree.leaves(forwards[0])
  assert len(leaves) == len(jax.tree.leaves(nnx.state(models[0])))
  rebuilt = jax.tree.unflatten(jax.tree.structure(forwards[0]), leaves)
  np.testing.assert_array_equal(rebuilt(jax.random.key(3), x), forwards[0](jax.random.key(3), x))


def _flops(fn, *args):
  return jax.jit(fn).lower(*args).compile().cost_analysis()["flops"]


def test_layers_before_the_first_stochastic_one_are_computed_once():
  x, key = jnp.ones((100, 784)), jax.random.key(0)
  first_layer = 2 * 100 * 784 * 256
  model = MLP(784, [256], 10, input_rate=0.0, hidden_rate=0.5, rngs=nnx.Rngs(0))
  forward = module_forward(model)
  one = _flops(lambda k, x: mc_sample(forward, k, x, 1), key, x)
  many = _flops(lambda k, x: mc_sample(forward, k, x, 32), key, x)
  # 32 samples cost one first layer plus 32 times the rest, not 32 full passes.
  assert many <= 1.02 * (first_layer + 32 * (one - first_layer))
  assert many < 0.5 * 32 * one  # paying the first layer 32 times would exceed this
  # With input dropout the first layer depends on the mask and is paid 32 times.
  noisy = module_forward(MLP(784, [256], 10, input_rate=0.2, rngs=nnx.Rngs(0)))
  assert _flops(lambda k, x: mc_sample(noisy, k, x, 32), key, x) > 1.8 * many


def test_explicit_prefix_is_applied_once_and_gives_the_same_samples():
  w1 = jax.random.normal(jax.random.key(1), (16, 32))
  w2 = jax.random.normal(jax.random.key(2), (32, 4))
  x = jax.random.normal(jax.random.key(3), (5, 16))
  full = lambda k, x: dropjax.dropout(k, jnp.tanh(x @ w1), 0.3) @ w2
  suffix = lambda k, h: dropjax.dropout(k, h, 0.3) @ w2
  calls = []

  def prefix(x):
    calls.append(None)
    return jnp.tanh(x @ w1)

  a = mc_sample(full, jax.random.key(0), x, 9, chunk_size=4)
  b = mc_sample(suffix, jax.random.key(0), x, 9, chunk_size=4, prefix=prefix)
  # Two programs, so float rounding may differ: an output is a sum of 32 terms as large as
  # the largest output (about 8), and a small one is a cancellation whose rounding error
  # scales with that size, not with its own.
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * np.abs(a).max())
  assert len(calls) == 1


def test_ten_thousand_samples_on_a_uci_sized_test_set_in_bounded_chunks():
  model = MLP(8, [50], 1, input_rate=0.05, hidden_rate=0.05, rngs=nnx.Rngs(0))
  forward = module_forward(model)
  x = jax.random.normal(jax.random.key(0), (1000, 8))
  samples = jax.jit(lambda k, x: mc_sample(forward, k, x, 10_000, chunk_size=500))(
      jax.random.key(1), x)
  assert samples.shape == (10_000, 1000, 1) and bool(jnp.all(jnp.isfinite(samples)))


_SHARDED_SCRIPT = r"""
import jax, jax.numpy as jnp, numpy as np
from flax import nnx
import dropjax
from dropjax import mc
from dropjax.mc import mc_sample, module_forward
from dropjax.models import MLP
assert len(jax.devices()) == 4
key, x = jax.random.key(0), jnp.arange(1.0, 33.0).reshape(4, 8)
mask_only = lambda k, x: dropjax.dropout(k, x, 0.5)
reference = mc_sample(mask_only, key, x, 10)
for chunk in (None, 2):
  sharded = jax.jit(lambda k, x: mc_sample(mask_only, k, x, 10, chunk_size=chunk,
                                           devices=jax.devices()))(key, x)
  np.testing.assert_array_equal(sharded, reference)
forward = module_forward(MLP(8, [16], 3, rngs=nnx.Rngs(0)))
one_device = jax.jit(lambda k, x: mc_sample(forward, k, x, 12, chunk_size=3))(key, x)
four = jax.jit(lambda k, x: mc_sample(forward, k, x, 12, devices=jax.devices()))(key, x)
np.testing.assert_array_equal(four, one_device)  # same per-device shape: bitwise equal
# A user's 2 x 2 mesh: samples over one axis, the batch of x over the other (automatic).
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
mesh = Mesh(np.asarray(jax.devices()).reshape(2, 2), ("samples", "data"))
x8 = jnp.arange(1.0, 65.0).reshape(8, 8)
x_sharded = jax.device_put(x8, NamedSharding(mesh, P("data")))
reference = mc_sample(mask_only, key, x8, 10)
collectives = ("all-reduce", "all-gather", "all-to-all", "collective-permute", "reduce-scatter")
for chunk in (None, 2):
  fn = jax.jit(lambda k, x, c=chunk: mc_sample(mask_only, k, x, 10, chunk_size=c, mesh=mesh,
                                               sample_axis="samples"))
  out = fn(key, x_sharded)
  np.testing.assert_array_equal(out, reference)  # masks do not depend on the layout
  assert out.sharding.spec == P("samples", "data"), out.sharding
  hlo = fn.lower(key, x_sharded).compile().as_text()
  assert not [c for c in collectives if c in hlo], "dropout under sharding added a collective"
forward = module_forward(MLP(8, [16], 3, input_rate=0.2, hidden_rate=0.5, rngs=nnx.Rngs(0)))
single = jax.jit(lambda f, k, x: mc_sample(f, k, x, 12))(forward, key, x8)
meshed = jax.jit(lambda f, k, x: mc_sample(f, k, x, 12, mesh=mesh, sample_axis="samples"))(
    forward, key, x_sharded)
np.testing.assert_allclose(meshed, single, rtol=1e-6, atol=1e-6)
print("OK")
"""


def test_sharding_over_four_devices_or_a_users_mesh_keeps_every_sample():
  run_on_simulated_devices(_SHARDED_SCRIPT, 4, timeout=300)


@pytest.mark.parametrize("chunk_size", [None, 1, 4, 7, 64])
def test_running_means_are_the_means_of_the_first_k_samples(chunk_size):
  forward = lambda k, x: jax.nn.softmax(dropjax.dropout(k, x, 0.5))
  x = jax.random.normal(jax.random.key(1), (9, 5))
  ks = (1, 2, 5, 13, 40)
  samples = mc_sample(forward, jax.random.key(3), x, max(ks))
  expected = jnp.stack([samples[:k].mean(0) for k in ks])
  got = jax.jit(lambda key, x: mc_running_means(forward, key, x, ks, chunk_size=chunk_size))(
      jax.random.key(3), x)
  # The same samples summed in another order: equal up to float32 rounding of 40 terms.
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
  # k = 1 is sample 0 itself, whatever the chunking.
  np.testing.assert_array_equal(got[0], samples[0])


def test_running_means_of_a_model_converge_to_the_mc_predictive():
  model = MLP(6, [32], 3, input_rate=0.2, hidden_rate=0.5, rngs=nnx.Rngs(params=0, dropout=1))
  forward = module_forward(model)
  x = jax.random.normal(jax.random.key(2), (11, 6))
  probs = lambda k, x: jax.nn.softmax(forward(k, x))
  means = mc_running_means(probs, jax.random.key(5), x, (10, 100), chunk_size=16)
  np.testing.assert_allclose(means[1], mc_predict(forward, jax.random.key(5), x, 100),
                             rtol=0, atol=1e-5)
  assert not np.allclose(means[0], means[1])  # fewer samples, another estimate
