"""A last-layer Laplace approximation: the post-hoc baseline set beside MC dropout.

The network up to its last dense layer is fixed at its trained (MAP) weights; the last
layer's weights ``theta = [kernel; bias]`` get a Gaussian posterior
``N(theta_MAP, (H + delta I)^-1)``, where ``H`` is the curvature of the training NLL at the
MAP and ``delta`` the precision of an isotropic Gaussian prior, chosen by maximising the
Laplace approximation of the marginal likelihood. The predictive integrates the softmax
over the Gaussian logits it implies: by the probit approximation, or by Monte Carlo.

The layout follows ``laplace-torch`` (Daxberger et al. 2021, ``subset_of_weights=
"last_layer"``): a softmax likelihood; ``hessian="ggn"`` (the generalised Gauss-Newton,
which for a last layer under softmax cross-entropy *is* the Hessian) or ``"ef"`` (the
empirical Fisher); ``structure="full"`` (the whole ``(D + 1) C`` square) or ``"kron"``
(K-FAC: the kernel's block ``(sum_n phi phi^T / N) ⊗ (sum_n G_n)``, the bias's block
``sum_n G_n`` exactly, no kernel-bias coupling). Parameters are ordered as the rows of
``[kernel; bias]`` flattened, i.e. index ``d * C + c`` for input ``d`` and class ``c``.

Everything is a pure function of arrays, so fitting and predicting jit, and a posterior is
a pytree (`LastLayerLaplace`).

References:
  MacKay. "A practical Bayesian framework for backpropagation networks." 1992.
  Ritter, Botev, Barber. "A scalable Laplace approximation for neural networks." ICLR 2018.
  Kristiadi, Hein, Hennig. "Being Bayesian, even just a bit, fixes overconfidence in ReLU
  networks." ICML 2020.
  Daxberger, Kristiadi, Immer, Eschenhagen, Bauer, Hennig. "Laplace Redux: effortless
  Bayesian deep learning." NeurIPS 2021.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from dropjax._validation import check_positive_int
from dropjax.metrics import _array, _check_finite, _check_labels, _check_shape, _host

ArrayLike = Any
HESSIANS = ("ggn", "ef")
STRUCTURES = ("full", "kron")
LINKS = ("probit", "mc")
# Bisection steps on log(delta) in [1e-12, 1e12]: 80 halvings of a width of 55 (natural
# log units) leave far below float32 resolution.
_BISECTION_STEPS = 80
_LOG_PRECISION_BOUNDS = (math.log(1e-12), math.log(1e12))
# Elements of the largest per-chunk intermediate of the "full" structure (64 MiB of
# float32): examples are processed in chunks so that N never multiplies ((D + 1) C)^2.
_CHUNK_ELEMENTS = 1 << 24


@struct.dataclass
class LastLayerLaplace:
  """The Gaussian posterior of a last dense layer (a pytree; ``structure`` is static).

  Attributes:
    kernel: ``(D, C)`` MAP kernel.
    bias: ``(C,)`` MAP bias.
    prior_precision: the isotropic prior precision delta (a scalar array).
    log_likelihood: the training log-likelihood at the MAP, summed over examples.
    eigenvalues: the curvature's eigenvalues, clipped at 0. ``"full"``: ``((D + 1) C,)``;
      ``"kron"``: ``(D,)`` of the input factor, then ``(C,)`` of the output factor.
    eigenvectors: the matching orthonormal eigenvectors (columns), as ``eigenvalues``.
    structure: ``"full"`` or ``"kron"``.
  """

  kernel: jax.Array
  bias: jax.Array
  prior_precision: jax.Array
  log_likelihood: jax.Array
  eigenvalues: tuple[jax.Array, ...]
  eigenvectors: tuple[jax.Array, ...]
  structure: str = struct.field(pytree_node=False, default="full")

  @property
  def num_parameters(self) -> int:
    return (self.kernel.shape[0] + 1) * self.kernel.shape[1]

  def hessian_spectrum(self) -> jax.Array:
    """Every eigenvalue of the curvature ``H`` (flat): what the evidence needs."""
    if self.structure == "full":
      return self.eigenvalues[0]
    inputs, outputs = self.eigenvalues
    return jnp.concatenate([jnp.outer(inputs, outputs).ravel(), outputs])

  def squared_norm(self) -> jax.Array:
    """``|theta*|^2``, the MAP weights' squared norm (kernel and bias)."""
    return jnp.sum(self.kernel ** 2) + jnp.sum(self.bias ** 2)

  def replace_prior_precision(self, prior_precision: ArrayLike) -> LastLayerLaplace:
    _check_prior_precision(prior_precision)
    return self.replace(prior_precision=jnp.asarray(prior_precision, jnp.float32))


def _check_choice(value: Any, name: str, allowed: tuple[str, ...]) -> None:
  if value not in allowed:
    raise ValueError(f"`{name}` must be one of {allowed}; got {value!r}.")


def _check_prior_precision(prior_precision: Any) -> None:
  host = _host(prior_precision)
  if host is None:
    return
  if host.shape != () or not np.isfinite(host) or not host > 0:
    raise ValueError(
        "`prior_precision` must be a finite scalar > 0 (the precision of the isotropic "
        f"Gaussian prior on the last layer), or None to fit it; got {prior_precision!r}.")


def _check_layer(features: Any, kernel: Any, bias: Any) -> None:
  _check_shape(features, "features", "(N, D) (examples, last-layer inputs)", ndim=2)
  _check_shape(kernel, "kernel", "(D, C) (last-layer inputs, classes)", ndim=2)
  _check_shape(bias, "bias", "(C,)", ndim=1)
  if features.shape[1] != kernel.shape[0]:
    raise ValueError(
        f"`features` has {features.shape[1]} columns but `kernel` has {kernel.shape[0]} rows: "
        "the features are the inputs of the last dense layer, and `kernel` its (D, C) "
        "weights (flax's layout: inputs first).")
  if bias.shape[0] != kernel.shape[1]:
    raise ValueError(f"`bias` has {bias.shape[0]} entries but `kernel` has {kernel.shape[1]} "
                     "columns (classes).")
  if kernel.shape[1] < 2:
    raise ValueError(f"A softmax last layer needs at least 2 classes; `kernel` has "
                     f"{kernel.shape[1]} column.")


def _labels(labels: Any, features: Any, kernel: Any) -> Any:
  logits = jax.ShapeDtypeStruct((features.shape[0], kernel.shape[1]), jnp.float32)
  return _check_labels(labels, logits, probs_name="logits")


def _augment(features: jax.Array) -> jax.Array:
  """``[phi, 1]``: the bias as one more input."""
  return jnp.concatenate([features, jnp.ones((features.shape[0], 1), features.dtype)], axis=1)


def _output_curvature(probs: jax.Array, labels: jax.Array, hessian: str) -> jax.Array:
  """``(N, C, C)``: the NLL's curvature in the logits, per example."""
  if hessian == "ggn":
    return jax.vmap(jnp.diag)(probs) - probs[:, :, None] * probs[:, None, :]
  residual = probs - jax.nn.one_hot(labels, probs.shape[1], dtype=probs.dtype)
  return residual[:, :, None] * residual[:, None, :]


def _summed_output_curvature(probs, labels, hessian):
  """``sum_n`` of `_output_curvature`, without its ``(N, C, C)`` array."""
  if hessian == "ggn":
    return jnp.diag(probs.sum(0)) - jnp.einsum("ni,nj->ij", probs, probs,
                                               precision=jax.lax.Precision.HIGHEST)
  residual = probs - jax.nn.one_hot(labels, probs.shape[1], dtype=probs.dtype)
  return jnp.einsum("ni,nj->ij", residual, residual, precision=jax.lax.Precision.HIGHEST)


def _eigh(matrix: jax.Array) -> tuple[jax.Array, jax.Array]:
  values, vectors = jnp.linalg.eigh((matrix + matrix.T) / 2)
  return jnp.maximum(values, 0.0), vectors


def last_layer_curvature(features: ArrayLike, labels: ArrayLike, kernel: ArrayLike,
                         bias: ArrayLike, *, hessian: str = "ggn",
                         structure: str = "full") -> tuple[jax.Array, ...]:
  """The training NLL's curvature in the last layer's weights ``[kernel; bias]``.

  Args:
    features: ``(N, D)`` inputs of the last dense layer (the network's deterministic
      features at its trained weights).
    labels: ``(N,)`` integer labels in ``[0, C)``.
    kernel: ``(D, C)`` the layer's trained kernel.
    bias: ``(C,)`` its trained bias.
    hessian: ``"ggn"`` (``sum_n J^T (diag p - p p^T) J``, here the exact Hessian) or
      ``"ef"`` (the empirical Fisher, ``sum_n g_n g_n^T``).
    structure: ``"full"`` or ``"kron"``.

  Returns:
    ``"full"``: one ``((D + 1) C, (D + 1) C)`` matrix. ``"kron"``: the input factor
    ``(D, D)`` (``sum_n phi phi^T / N``) and the output factor ``(C, C)``
    (``sum_n G_n``); the kernel's block is their Kronecker product, the bias's block the
    output factor.
  """
  return _curvature(*_checked_inputs(features, labels, kernel, bias, hessian, structure),
                    hessian, structure)


def _checked_inputs(features, labels, kernel, bias, hessian, structure):
  """The options checked, and ``(features, labels, kernel, bias)`` checked and as float32
  (labels as given)."""
  _check_choice(hessian, "hessian", HESSIANS)
  _check_choice(structure, "structure", STRUCTURES)
  features, kernel, bias = (_array(v, n) for v, n in
                            ((features, "features"), (kernel, "kernel"), (bias, "bias")))
  _check_layer(features, kernel, bias)
  for value, name in ((features, "features"), (kernel, "kernel"), (bias, "bias")):
    _check_finite(value, name)
  labels = _labels(labels, features, kernel)
  return (jnp.asarray(features, jnp.float32), jnp.asarray(labels),
          jnp.asarray(kernel, jnp.float32), jnp.asarray(bias, jnp.float32))


def _chunk_size(per_example_elements: int) -> int:
  return max(1, _CHUNK_ELEMENTS // per_example_elements)


def _curvature(features, labels, kernel, bias, hessian, structure):
  if structure == "kron":
    probs = jax.nn.softmax(features @ kernel + bias)
    inputs = jnp.einsum("nd,ne->de", features, features,
                        precision=jax.lax.Precision.HIGHEST) / features.shape[0]
    return inputs, _summed_output_curvature(probs, labels, hessian)
  n, c = labels.shape[0], kernel.shape[1]
  d = features.shape[1] + 1
  chunk = min(n, _chunk_size(d * c * c))
  pad = -n % chunk
  # Padded examples get weight 0, so they add nothing to the sum.
  weights = jnp.concatenate([jnp.ones(n), jnp.zeros(pad)])
  features = jnp.concatenate([features, jnp.zeros((pad, features.shape[1]), features.dtype)])
  labels = jnp.concatenate([labels, jnp.zeros(pad, labels.dtype)])

  def add_chunk(total, chunk_arrays):
    x, y, w = chunk_arrays
    probs = jax.nn.softmax(x @ kernel + bias)
    per_example = _output_curvature(probs, y, hessian) * w[:, None, None]
    phi = _augment(x)
    return total + jnp.einsum("nd,nij,ne->diej", phi, per_example, phi,
                              precision=jax.lax.Precision.HIGHEST), None

  chunks = [a.reshape(-1, chunk, *a.shape[1:]) for a in (features, labels, weights)]
  total, _ = jax.lax.scan(add_chunk, jnp.zeros((d, c, d, c), jnp.float32), chunks)
  return (total.reshape(d * c, d * c),)


def _log_likelihood(features, labels, kernel, bias):
  logits = features @ kernel + bias
  return jnp.sum(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))


def log_marginal_likelihood(posterior: LastLayerLaplace,
                            prior_precision: ArrayLike | None = None) -> jax.Array:
  """The Laplace approximation of the log evidence at ``prior_precision``.

  ``log p(y | X, theta*) - delta |theta*|^2 / 2 + P log(delta) / 2 - log det(H + delta I) / 2``
  for ``P`` last-layer parameters (MacKay 1992; ``laplace-torch``'s
  ``log_marginal_likelihood`` with an isotropic prior centred at 0).

  Args:
    posterior: a fitted `LastLayerLaplace`.
    prior_precision: delta; None for the posterior's own.

  Returns:
    A scalar (nats).
  """
  delta = posterior.prior_precision if prior_precision is None else prior_precision
  _check_prior_precision(delta)
  delta = jnp.asarray(delta, jnp.float32)
  spectrum = posterior.hessian_spectrum()
  sq_norm = posterior.squared_norm()
  return (posterior.log_likelihood - 0.5 * delta * sq_norm
          + 0.5 * posterior.num_parameters * jnp.log(delta)
          - 0.5 * jnp.sum(jnp.log(spectrum + delta)))


def optimal_prior_precision(posterior: LastLayerLaplace) -> jax.Array:
  """The prior precision that maximises `log_marginal_likelihood`.

  The evidence's derivative in ``log delta`` is ``(gamma(delta) - delta |theta*|^2) / 2``
  with ``gamma = sum_i lambda_i / (lambda_i + delta)`` (the effective number of
  parameters), which falls strictly in ``delta``: the maximum is its one root, MacKay's
  fixed point ``delta = gamma / |theta*|^2``, found by bisection on ``log delta`` over
  ``[1e-12, 1e12]``. (``laplace-torch`` runs Adam on the same objective.) A root outside
  that range gives its nearer end: 1e12 when ``theta* = 0`` (no finite optimum, which
  `fit_last_layer_laplace` refuses), 1e-12 when the curvature is 0.

  Args:
    posterior: a fitted `LastLayerLaplace`.

  Returns:
    A scalar delta > 0.
  """
  spectrum = posterior.hessian_spectrum()
  sq_norm = posterior.squared_norm()

  def slope(log_delta):
    delta = jnp.exp(log_delta)
    return jnp.sum(spectrum / (spectrum + delta)) - delta * sq_norm

  def step(_, bounds):
    low, high = bounds
    middle = (low + high) / 2
    rising = slope(middle) > 0
    return jnp.where(rising, middle, low), jnp.where(rising, high, middle)

  low, high = jax.lax.fori_loop(0, _BISECTION_STEPS, step,
                                tuple(jnp.float32(b) for b in _LOG_PRECISION_BOUNDS))
  return jnp.exp((low + high) / 2)


def fit_last_layer_laplace(features: ArrayLike, labels: ArrayLike, kernel: ArrayLike,
                           bias: ArrayLike, *, hessian: str = "ggn", structure: str = "full",
                           prior_precision: ArrayLike | None = None) -> LastLayerLaplace:
  """Fits a last-layer Laplace approximation of a trained softmax classifier.

  Args:
    features: ``(N, D)`` training inputs of the last dense layer, computed at the trained
      weights with dropout off (e.g. `last_layer_features`).
    labels: ``(N,)`` integer training labels in ``[0, C)``.
    kernel: ``(D, C)`` the last layer's trained kernel (``nnx.Linear.kernel``).
    bias: ``(C,)`` its trained bias.
    hessian: ``"ggn"`` (the Gauss-Newton, exact for a last layer) or ``"ef"`` (the
      empirical Fisher).
    structure: ``"full"`` (``((D + 1) C)^2`` entries: fine for a few thousand weights) or
      ``"kron"`` (K-FAC: ``D^2 + C^2``).
    prior_precision: the prior precision delta > 0; None (the default) fits it by
      maximising the marginal likelihood (`optimal_prior_precision`).

  Returns:
    A `LastLayerLaplace`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from dropjax import laplace
    >>> phi = jax.random.normal(jax.random.key(0), (200, 3))
    >>> labels = (phi[:, 0] > 0).astype(jnp.int32)
    >>> kernel, bias = jnp.array([[2.0, -2.0], [0., 0.], [0., 0.]]), jnp.zeros(2)
    >>> posterior = laplace.fit_last_layer_laplace(phi, labels, kernel, bias)
    >>> probs = laplace.predictive_probs(posterior, phi[:5])
    >>> probs.shape
    (5, 2)

  References:
    Daxberger et al. "Laplace Redux: effortless Bayesian deep learning." NeurIPS 2021.
  """
  if prior_precision is not None:
    _check_prior_precision(prior_precision)
  features, labels, kernel, bias = _checked_inputs(features, labels, kernel, bias, hessian,
                                                   structure)
  host = [_host(kernel), _host(bias)]
  if (prior_precision is None and all(h is not None for h in host)
      and not any(np.any(h) for h in host)):
    raise ValueError(
        "`kernel` and `bias` are all zero: the evidence then grows without bound in the "
        "prior precision (no finite optimum). Pass a trained layer, or `prior_precision`.")
  return _fit(features, labels, kernel, bias,
              None if prior_precision is None else jnp.asarray(prior_precision, jnp.float32),
              hessian=hessian, structure=structure)


@jax.jit(static_argnames=("hessian", "structure"))
def _fit(features, labels, kernel, bias, prior_precision, *, hessian, structure):
  factors = _curvature(features, labels, kernel, bias, hessian, structure)
  values, vectors = zip(*(_eigh(f) for f in factors), strict=True)
  posterior = LastLayerLaplace(
      kernel=kernel, bias=bias, prior_precision=jnp.float32(1.0),
      log_likelihood=_log_likelihood(features, labels, kernel, bias),
      eigenvalues=tuple(values), eigenvectors=tuple(vectors), structure=structure)
  if prior_precision is None:
    prior_precision = optimal_prior_precision(posterior)
  return posterior.replace(prior_precision=prior_precision)


def _check_posterior(posterior: Any, features: Any) -> jax.Array:
  if not isinstance(posterior, LastLayerLaplace):
    raise TypeError("`posterior` must be a LastLayerLaplace (from fit_last_layer_laplace); "
                    f"got {type(posterior).__name__}.")
  features = _array(features, "features")
  _check_shape(features, "features", "(N, D) (examples, last-layer inputs)", ndim=2)
  if features.shape[1] != posterior.kernel.shape[0]:
    raise ValueError(f"`features` has {features.shape[1]} columns; the posterior's last layer "
                     f"takes {posterior.kernel.shape[0]} inputs.")
  return jnp.asarray(features, jnp.float32)


def logit_moments(posterior: LastLayerLaplace,
                  features: ArrayLike) -> tuple[jax.Array, jax.Array]:
  """The Gaussian over the logits that the posterior implies (the linearised predictive).

  Args:
    posterior: a fitted `LastLayerLaplace`.
    features: ``(N, D)`` last-layer inputs.

  Returns:
    ``(mean, covariance)``: ``(N, C)`` the MAP logits and ``(N, C, C)``
    ``J (H + delta I)^-1 J^T`` per example.
  """
  features = _check_posterior(posterior, features)
  return _logit_moments(posterior, features)


def _logit_moments(posterior, features):
  mean = features @ posterior.kernel + posterior.bias
  delta = posterior.prior_precision
  if posterior.structure == "full":
    (values,), (vectors,) = posterior.eigenvalues, posterior.eigenvectors
    d, c = posterior.kernel.shape[0] + 1, posterior.kernel.shape[1]
    basis = vectors.reshape(d, c, -1)
    inverse = 1.0 / (values + delta)

    def covariance(phi):
      # J Q for every eigenvector (C, P), scaled by the posterior variances.
      projected = jnp.einsum("d,dcp->cp", phi, basis)
      return jnp.einsum("cp,p,kp->ck", projected, inverse, projected)

    cov = jax.lax.map(covariance, _augment(features), batch_size=_chunk_size(d * c * c))
    return mean, cov
  (in_values, out_values), (in_vectors, out_vectors) = (posterior.eigenvalues,
                                                        posterior.eigenvectors)
  weights = jnp.einsum("nd,di->ni", features, in_vectors) ** 2
  variances = weights @ (1.0 / (jnp.outer(in_values, out_values) + delta))
  variances = variances + 1.0 / (out_values + delta)  # the bias block
  cov = jnp.einsum("cj,nj,kj->nck", out_vectors, variances, out_vectors)
  return mean, cov


def sample_last_layer(posterior: LastLayerLaplace, key: jax.Array,
                      num_samples: int) -> tuple[jax.Array, jax.Array]:
  """Draws last-layer weights from the posterior.

  Args:
    posterior: a fitted `LastLayerLaplace`.
    key: a JAX PRNG key.
    num_samples: S.

  Returns:
    ``(kernels, biases)``: ``(S, D, C)`` and ``(S, C)``.
  """
  check_positive_int(num_samples, "num_samples")
  d, c = posterior.kernel.shape
  z = jax.random.normal(key, (num_samples, d + 1, c))
  delta = posterior.prior_precision
  if posterior.structure == "full":
    (values,), (vectors,) = posterior.eigenvalues, posterior.eigenvectors
    flat = (z.reshape(num_samples, -1) / jnp.sqrt(values + delta)) @ vectors.T
    offsets = flat.reshape(num_samples, d + 1, c)
  else:
    (in_values, out_values), (in_vectors, out_vectors) = (posterior.eigenvalues,
                                                          posterior.eigenvectors)
    scale = jnp.sqrt(jnp.outer(in_values, out_values) + delta)
    kernel_offsets = jnp.einsum("di,sij,cj->sdc", in_vectors, z[:, :d] / scale, out_vectors)
    bias_offsets = (z[:, d] / jnp.sqrt(out_values + delta)) @ out_vectors.T
    offsets = jnp.concatenate([kernel_offsets, bias_offsets[:, None]], axis=1)
  return posterior.kernel + offsets[:, :d], posterior.bias + offsets[:, d]


def predictive_probs(posterior: LastLayerLaplace, features: ArrayLike, *,
                     link: str = "probit", key: jax.Array | None = None,
                     num_samples: int = 100) -> jax.Array:
  """Class probabilities under the posterior.

  Args:
    posterior: a fitted `LastLayerLaplace`.
    features: ``(N, D)`` last-layer inputs (dropout off).
    link: ``"probit"``, ``softmax(mu / sqrt(1 + pi/8 diag(Sigma)))`` (the generalised
      probit approximation, ``laplace-torch``'s default ``link_approx``), or ``"mc"``,
      the mean softmax over ``num_samples`` last layers drawn from the posterior.
    key: the PRNG key for ``"mc"``.
    num_samples: S for ``"mc"``.

  Returns:
    ``(N, C)`` probabilities.
  """
  _check_choice(link, "link", LINKS)
  features = _check_posterior(posterior, features)
  if link == "probit":
    mean, cov = _logit_moments(posterior, features)
    variances = jnp.diagonal(cov, axis1=1, axis2=2)
    return jax.nn.softmax(mean / jnp.sqrt(1.0 + jnp.pi / 8.0 * variances))
  if key is None:
    raise ValueError('`link="mc"` samples last layers: pass `key`.')
  kernels, biases = sample_last_layer(posterior, key, num_samples)
  return jnp.mean(jax.nn.softmax(jnp.einsum("nd,sdc->snc", features, kernels)
                                 + biases[:, None]), axis=0)


def last_layer_features(model: Any, x: ArrayLike, *, batch_size: int = 1000) -> jax.Array:
  """The inputs of ``model``'s output layer, with dropout off, computed in batches.

  Args:
    model: an NNX classifier with ``penultimate(x)`` (the inputs of its last dense layer)
      and ``output_layer`` (that ``nnx.Linear``), as `dropjax.models.MLP`,
      `~dropjax.models.KerasMnistCNN` and `~dropjax.models.LeNet5` have. For another model,
      compute the features yourself and call `fit_last_layer_laplace`.
    x: the model's inputs.
    batch_size: examples per forward pass.

  Returns:
    ``(N, D)`` features, computed on an inference-mode view of ``model`` (dropout and MC
    sampling off, BatchNorm on its running statistics); ``model``'s own modes are left
    as they are.
  """
  if not (callable(getattr(model, "penultimate", None)) and hasattr(model, "output_layer")):
    raise TypeError(
        f"`model` ({type(model).__name__}) needs `penultimate(x)` and `output_layer` for a "
        "last-layer Laplace approximation; or compute the inputs of its last dense layer "
        "yourself and call fit_last_layer_laplace(features, labels, kernel, bias).")
  check_positive_int(batch_size, "batch_size")
  # A view in inference mode (dropout off, MC sampling off, BatchNorm on its running
  # statistics); the caller's model keeps its own modes.
  view = nnx.view(model, deterministic=True, mc=False, use_running_average=True,
                  raise_if_not_found=False)
  x = np.asarray(x) if not isinstance(x, jax.Array) else x
  return jnp.concatenate([_penultimate(view, x[i:i + batch_size])
                          for i in range(0, len(x), batch_size)])


@nnx.jit
def _penultimate(model, x):
  return model.penultimate(x)


def fit_model_laplace(model: Any, x: ArrayLike, labels: ArrayLike, *, batch_size: int = 1000,
                      **kwargs: Any) -> LastLayerLaplace:
  """`fit_last_layer_laplace` on ``model``'s output layer, from its training inputs.

  Args:
    model: as for `last_layer_features`.
    x: the training inputs.
    labels: ``(N,)`` integer training labels.
    batch_size: examples per forward pass.
    **kwargs: ``hessian``, ``structure``, ``prior_precision`` of `fit_last_layer_laplace`.

  Returns:
    A `LastLayerLaplace`; predict with
    ``predictive_probs(posterior, last_layer_features(model, x_test))``.
  """
  features = last_layer_features(model, x, batch_size=batch_size)
  layer = model.output_layer
  if getattr(layer, "bias", None) is None:
    raise ValueError("`model.output_layer` has no bias; this approximation covers a dense "
                     "layer with one (nnx.Linear(..., use_bias=True)).")
  return fit_last_layer_laplace(features, labels, layer.kernel[...], layer.bias[...], **kwargs)
