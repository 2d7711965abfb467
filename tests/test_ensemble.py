"""The implicit-ensemble identities, checked exactly by enumerating every sub-network."""

import jax
import jax.numpy as jnp
import numpy as np

import dropjax
from dropjax.ensemble import all_masks, exact_ensemble, mask_probabilities
from dropjax.mc import mc_sample

N_IN, N_HIDDEN, N_OUT = 10, 8, 4
W = jax.random.normal(jax.random.key(0), (N_IN, N_OUT))
X = jax.random.normal(jax.random.key(1), (6, N_IN))


def test_mask_probabilities_sum_to_one():
  masks = all_masks(10)
  assert masks.shape == (1024, 10)
  np.testing.assert_allclose(mask_probabilities(masks, 0.7).sum(), 1.0, rtol=1e-12)


def test_weight_scaling_is_the_normalised_geometric_mean_of_a_softmax_layer():
  averages = exact_ensemble(lambda m, x: (x * m) @ W, X @ W, X, N_IN, rate=0.5)
  np.testing.assert_allclose(averages.geometric, averages.weight_scaling, atol=1e-6)
  # The arithmetic mean (what MC dropout estimates) is a different distribution.
  assert float(jnp.abs(averages.arithmetic - averages.weight_scaling).max()) > 1e-3


def test_with_a_hidden_layer_weight_scaling_is_only_approximate():
  w1 = jax.random.normal(jax.random.key(2), (N_IN, N_HIDDEN))
  w2 = jax.random.normal(jax.random.key(3), (N_HIDDEN, N_OUT))
  # Dropping the hidden units feeds a single softmax layer again: still exact.
  on_hidden = exact_ensemble(lambda m, x: (jax.nn.relu(x @ w1) * m) @ w2,
                             jax.nn.relu(X @ w1) @ w2, X, N_HIDDEN, rate=0.5)
  np.testing.assert_allclose(on_hidden.geometric, on_hidden.weight_scaling, atol=1e-6)
  # Dropping the inputs, before the nonlinearity: weight scaling is an approximation.
  on_inputs = exact_ensemble(lambda m, x: jax.nn.relu((x * m) @ w1) @ w2,
                             jax.nn.relu(X @ w1) @ w2, X, N_IN, rate=0.5)
  assert float(jnp.abs(on_inputs.geometric - on_inputs.weight_scaling).max()) > 1e-3


def test_mc_dropout_converges_to_the_exact_arithmetic_mean():
  logits = lambda m, x: (x * m) @ W
  averages = exact_ensemble(logits, X @ W, X, N_IN, rate=0.5)
  forward = lambda k, x: jax.nn.softmax(dropjax.dropout(k, x, 0.5) @ W)
  samples = mc_sample(forward, jax.random.key(4), X, 20_000, chunk_size=5000)
  se = samples.std(0) / np.sqrt(samples.shape[0])
  assert bool(jnp.all(jnp.abs(samples.mean(0) - averages.arithmetic) <= 5 * se + 1e-7))
