"""MC sampling: per-sample keys, chunk invariance, independence, the weight-scaling limit."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import dropjax
from dropjax.mc import mc_predict, mc_sample, module_forward
from dropjax.models import MLP


def test_chunking_does_not_change_the_masks():
  # Pure masking: every sample is bitwise identical whatever the chunk size.
  forward = lambda k, x: dropjax.dropout(k, x, 0.5)
  x = jnp.arange(1.0, 65.0).reshape(8, 8)
  key = jax.random.key(3)
  full = jax.jit(lambda k, x: mc_sample(forward, k, x, 12))(key, x)
  for chunk in (1, 5, 12):
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
  # Without dropout layers the MC mean is the deterministic prediction.
  plain = MLP(6, [16], 2, variant="none", rngs=nnx.Rngs(0))
  plain.eval()
  np.testing.assert_allclose(mc_predict(module_forward(plain), jax.random.key(0), x, 4),
                             jax.nn.softmax(plain(x)), rtol=1e-6)
