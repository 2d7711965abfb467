"""The last-layer Laplace approximation against cases computed by hand and dense algebra."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dropjax import laplace


def _problem(n=60, d=3, c=4, seed=0):
  keys = jax.random.split(jax.random.key(seed), 4)
  features = jax.random.normal(keys[0], (n, d))
  labels = jax.random.randint(keys[1], (n,), 0, c)
  kernel = 0.5 * jax.random.normal(keys[2], (d, c))
  bias = 0.1 * jax.random.normal(keys[3], (c,))
  return features, labels, kernel, bias


def _dense_precision(posterior):
  """``H + delta I`` as one dense matrix (float64), from the posterior's factors."""
  delta = float(posterior.prior_precision)
  values = [np.asarray(v, np.float64) for v in posterior.eigenvalues]
  vectors = [np.asarray(v, np.float64) for v in posterior.eigenvectors]
  factors = [q @ np.diag(v) @ q.T for v, q in zip(values, vectors, strict=True)]
  if posterior.structure == "full":
    return factors[0] + delta * np.eye(len(values[0]))
  inputs, outputs = factors
  d, c = len(values[0]), len(values[1])
  precision = np.zeros(((d + 1) * c, (d + 1) * c))
  precision[:d * c, :d * c] = np.kron(inputs, outputs)
  precision[d * c:, d * c:] = outputs
  return precision + delta * np.eye((d + 1) * c)


def test_curvature_of_one_example_computed_by_hand():
  # phi = 2, weights 0: p = (1/2, 1/2), so diag(p) - p p^T = [[1, -1], [-1, 1]] / 4, and
  # for label 0 the residual p - y = (-1/2, 1/2) has the same outer product.
  out = np.array([[1.0, -1.0], [-1.0, 1.0]]) / 4
  kernel, bias = jnp.zeros((1, 2)), jnp.zeros(2)
  for hessian in laplace.HESSIANS:
    (full,) = laplace.last_layer_curvature(jnp.array([[2.0]]), jnp.array([0]), kernel, bias,
                                           hessian=hessian)
    # Parameters (w_0, w_1, b_0, b_1); [phi, 1] [phi, 1]^T = [[4, 2], [2, 1]].
    np.testing.assert_allclose(full, np.kron([[4.0, 2.0], [2.0, 1.0]], out), atol=1e-7)
    inputs, outputs = laplace.last_layer_curvature(jnp.array([[2.0]]), jnp.array([0]),
                                                   kernel, bias, hessian=hessian,
                                                   structure="kron")
    np.testing.assert_allclose(inputs, [[4.0]], atol=1e-7)
    np.testing.assert_allclose(outputs, out, atol=1e-7)


def test_the_ggn_is_the_exact_hessian_and_the_ef_the_sum_of_gradient_outer_products():
  features, labels, kernel, bias = _problem()
  theta = jnp.concatenate([kernel, bias[None]]).ravel()
  d, c = kernel.shape

  def nll(theta, x, y):
    w = theta.reshape(d + 1, c)
    logits = x @ w[:d] + w[d]
    return -jnp.sum(jnp.take_along_axis(jax.nn.log_softmax(logits), y[..., None], -1))

  (ggn,) = laplace.last_layer_curvature(features, labels, kernel, bias, hessian="ggn")
  np.testing.assert_allclose(ggn, jax.hessian(nll)(theta, features, labels), atol=1e-5)
  grads = jax.vmap(jax.grad(nll), in_axes=(None, 0, 0))(theta, features[:, None],
                                                         labels[:, None])
  (ef,) = laplace.last_layer_curvature(features, labels, kernel, bias, hessian="ef")
  np.testing.assert_allclose(ef, grads.T @ grads, atol=1e-5)
  # K-FAC: the kernel's block is (sum phi phi^T / N) ⊗ (sum G_n); the bias's is sum G_n.
  inputs, outputs = laplace.last_layer_curvature(features, labels, kernel, bias,
                                                 structure="kron")
  np.testing.assert_allclose(inputs, features.T @ features / len(labels), rtol=1e-5)
  np.testing.assert_allclose(outputs, ggn[d * c:, d * c:], atol=1e-5)


@pytest.mark.parametrize("structure", laplace.STRUCTURES)
def test_marginal_likelihood_matches_a_dense_log_determinant(structure):
  features, labels, kernel, bias = _problem()
  posterior = laplace.fit_last_layer_laplace(features, labels, kernel, bias,
                                             structure=structure, prior_precision=2.0)
  logits = np.asarray(features @ kernel + bias, np.float64)
  log_lik = np.sum(logits[np.arange(len(labels)), labels]
                   - np.log(np.exp(logits).sum(1)))
  theta = np.concatenate([np.asarray(kernel).ravel(), np.asarray(bias)])
  for delta in (0.5, 2.0, 30.0):
    precision = _dense_precision(posterior)
    precision += (delta - 2.0) * np.eye(len(theta))
    expected = (log_lik - 0.5 * delta * theta @ theta + 0.5 * len(theta) * np.log(delta)
                - 0.5 * np.linalg.slogdet(precision)[1])
    np.testing.assert_allclose(laplace.log_marginal_likelihood(posterior, delta), expected,
                               rtol=1e-5)


@pytest.mark.parametrize("structure", laplace.STRUCTURES)
def test_the_fitted_prior_precision_maximises_the_evidence(structure):
  features, labels, kernel, bias = _problem()
  posterior = laplace.fit_last_layer_laplace(features, labels, kernel, bias,
                                             structure=structure)
  best = float(posterior.prior_precision)
  grid = np.exp(np.linspace(np.log(best) - 3, np.log(best) + 3, 241))
  evidence = np.array([laplace.log_marginal_likelihood(posterior, g) for g in grid])
  assert laplace.log_marginal_likelihood(posterior) >= evidence.max() - 1e-4
  assert abs(np.log(grid[evidence.argmax()]) - np.log(best)) <= 0.025 + 1e-6
  # MacKay's fixed point: delta |theta|^2 = gamma, the effective number of parameters.
  spectrum = posterior.hessian_spectrum()
  gamma = float(jnp.sum(spectrum / (spectrum + best)))
  norm = float(jnp.sum(kernel ** 2) + jnp.sum(bias ** 2))
  np.testing.assert_allclose(best * norm, gamma, rtol=1e-4)


@pytest.mark.parametrize("structure", laplace.STRUCTURES)
def test_logit_covariance_is_the_jacobian_through_the_dense_posterior(structure):
  features, labels, kernel, bias = _problem()
  posterior = laplace.fit_last_layer_laplace(features, labels, kernel, bias,
                                             structure=structure)
  covariance = np.linalg.inv(_dense_precision(posterior))
  mean, cov = laplace.logit_moments(posterior, features[:5])
  c = kernel.shape[1]
  for n in range(5):
    phi = np.append(np.asarray(features[n], np.float64), 1.0)
    jacobian = np.kron(phi[None], np.eye(c))  # d logit_c / d theta_{d * C + c'}
    np.testing.assert_allclose(cov[n], jacobian @ covariance @ jacobian.T, rtol=2e-4,
                               atol=1e-6)
  np.testing.assert_allclose(mean, features[:5] @ kernel + bias, rtol=1e-6)


@pytest.mark.parametrize("structure", laplace.STRUCTURES)
def test_sampled_last_layers_give_the_logit_moments(structure):
  """Mean and covariance of sampled logits within 5 standard errors."""
  features, labels, kernel, bias = _problem()
  posterior = laplace.fit_last_layer_laplace(features, labels, kernel, bias,
                                             structure=structure, prior_precision=1.0)
  samples = 20_000
  kernels, biases = laplace.sample_last_layer(posterior, jax.random.key(7), samples)
  x = features[:3]
  logits = np.asarray(jnp.einsum("nd,sdc->snc", x, kernels) + biases[:, None], np.float64)
  mean, cov = (np.asarray(m, np.float64) for m in laplace.logit_moments(posterior, x))
  variances = np.diagonal(cov, axis1=1, axis2=2)
  assert np.all(np.abs(logits.mean(0) - mean) <= 5 * np.sqrt(variances / samples))
  centred = logits - mean
  empirical = np.einsum("snc,snk->nck", centred, centred) / samples
  se = np.sqrt((variances[:, :, None] * variances[:, None, :] + cov ** 2) / samples)
  assert np.all(np.abs(empirical - cov) <= 5 * se)


def test_probit_shrinks_towards_uniform_and_recovers_the_map_under_a_tight_prior():
  features, labels, kernel, bias = _problem()
  map_probs = jax.nn.softmax(features @ kernel + bias)
  loose = laplace.fit_last_layer_laplace(features, labels, kernel, bias, prior_precision=0.1)
  tight = laplace.fit_last_layer_laplace(features, labels, kernel, bias, prior_precision=1e7)
  np.testing.assert_allclose(laplace.predictive_probs(tight, features), map_probs, atol=1e-5)
  assert np.all(laplace.predictive_probs(loose, features).max(1) < map_probs.max(1))
  mc = laplace.predictive_probs(tight, features, link="mc", key=jax.random.key(0),
                                num_samples=50)
  np.testing.assert_allclose(mc, map_probs, atol=1e-3)


def test_fitting_jits_and_matches_eager():
  features, labels, kernel, bias = _problem()
  eager = laplace.fit_last_layer_laplace(features, labels, kernel, bias, structure="kron")
  jitted = jax.jit(lambda x: laplace.fit_last_layer_laplace(x, labels, kernel, bias,
                                                            structure="kron"))(features)
  np.testing.assert_allclose(jitted.prior_precision, eager.prior_precision, rtol=1e-6)
  np.testing.assert_allclose(laplace.predictive_probs(jitted, features),
                             laplace.predictive_probs(eager, features), rtol=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    ({"hessian": "fisher"}, r"`hessian` must be one of \('ggn', 'ef'\)"),
    ({"structure": "diag"}, r"`structure` must be one of \('full', 'kron'\)"),
    ({"prior_precision": 0.0}, "`prior_precision` must be a finite scalar > 0"),
    ({"prior_precision": -1.0}, "`prior_precision` must be a finite scalar > 0"),
])
def test_bad_options_are_refused_by_name(kwargs, match):
  features, labels, kernel, bias = _problem()
  with pytest.raises(ValueError, match=match):
    laplace.fit_last_layer_laplace(features, labels, kernel, bias, **kwargs)


def test_bad_shapes_and_labels_are_refused_by_name():
  features, labels, kernel, bias = _problem()
  with pytest.raises(ValueError, match="`features` has 3 columns but `kernel` has 4 rows"):
    laplace.fit_last_layer_laplace(features, labels, kernel.T, bias)
  with pytest.raises(ValueError, match=r"`features` must have shape \(N, D\)"):
    laplace.fit_last_layer_laplace(features[0], labels, kernel, bias)
  with pytest.raises(ValueError, match="`bias` has 3 entries"):
    laplace.fit_last_layer_laplace(features, labels, kernel, bias[:3])
  with pytest.raises(ValueError, match="labels"):
    laplace.fit_last_layer_laplace(features, labels + 4, kernel, bias)
  with pytest.raises(ValueError, match="`features` must be finite"):
    laplace.fit_last_layer_laplace(features.at[0, 0].set(jnp.nan), labels, kernel, bias)
  posterior = laplace.fit_last_layer_laplace(features, labels, kernel, bias)
  with pytest.raises(ValueError, match="the posterior's last layer takes 3 inputs"):
    laplace.predictive_probs(posterior, features[:, :2])
  with pytest.raises(ValueError, match='`link="mc"` samples last layers: pass `key`'):
    laplace.predictive_probs(posterior, features, link="mc")
  with pytest.raises(ValueError, match="`link` must be one of"):
    laplace.predictive_probs(posterior, features, link="bridge")
  with pytest.raises(TypeError, match="`posterior` must be a LastLayerLaplace"):
    laplace.predictive_probs({"kernel": kernel}, features)
  with pytest.raises(ValueError, match="`bias` must be finite"):
    laplace.fit_last_layer_laplace(features, labels, kernel, bias.at[1].set(jnp.inf))
  with pytest.raises(ValueError, match="`kernel` and `bias` are all zero"):
    laplace.fit_last_layer_laplace(features, labels, 0 * kernel, 0 * bias)
  # With a given prior precision an all-zero layer is a valid (if untrained) posterior.
  assert laplace.fit_last_layer_laplace(features, labels, 0 * kernel, 0 * bias,
                                        prior_precision=1.0).prior_precision == 1.0


def test_fit_model_laplace_reads_the_output_layer_of_an_mlp():
  from flax import nnx

  from dropjax import layers
  from dropjax.models import MLP
  model = MLP(8, [16], 3, input_rate=0.2, hidden_rate=0.5, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (40, 8))
  labels = jnp.arange(40) % 3
  layers.set_mc(model)  # sampling on: the features must still be computed without it
  posterior = laplace.fit_model_laplace(model, x, labels, batch_size=7, structure="kron")
  features = laplace.last_layer_features(model, x, batch_size=7)
  assert features.shape == (40, 16)
  assert all(m.sampling for m in layers.stochastic_layers(model))  # the model's mode kept
  # With dropout off, the output layer on the features is the model.
  model.eval()
  layers.set_mc(model, False)
  np.testing.assert_allclose(features @ posterior.kernel + posterior.bias, model(x),
                             rtol=1e-5, atol=1e-6)
  with pytest.raises(TypeError, match="needs `penultimate\\(x\\)` and `output_layer`"):
    laplace.last_layer_features(nnx.Linear(8, 3, rngs=nnx.Rngs(0)), x)


def test_chunked_full_curvature_and_covariances_equal_one_chunk(monkeypatch):
  """Chunks of 7 of 60 examples (the last one padded) give the one-chunk numbers."""
  features, labels, kernel, bias = _problem()
  posterior = laplace.fit_last_layer_laplace(features, labels, kernel, bias)
  whole = laplace.last_layer_curvature(features, labels, kernel, bias)[0]
  _, cov = laplace.logit_moments(posterior, features)
  per_example = (kernel.shape[0] + 1) * kernel.shape[1] ** 2
  monkeypatch.setattr(laplace, "_CHUNK_ELEMENTS", 7 * per_example)
  for hessian in laplace.HESSIANS:
    chunked = laplace.last_layer_curvature(features, labels, kernel, bias, hessian=hessian)[0]
    np.testing.assert_allclose(
        chunked, laplace.last_layer_curvature(features[:30], labels[:30], kernel, bias,
                                              hessian=hessian)[0]
        + laplace.last_layer_curvature(features[30:], labels[30:], kernel, bias,
                                       hessian=hessian)[0], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(laplace.last_layer_curvature(features, labels, kernel, bias)[0],
                             whole, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(laplace.logit_moments(posterior, features)[1], cov, rtol=1e-5,
                             atol=1e-7)
