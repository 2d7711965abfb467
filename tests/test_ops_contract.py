"""The contract every dropout op honours, over every op example of `dropjax.variants`."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dropjax
from dropjax import variants


def _op_cases():
  """``{id: (op(key, x, rate, *, deterministic), shape, example)}`` from the registry: every
  op example of every variant (`dropjax.variants`), so a new variant is covered here."""
  cases = {}
  for variant in variants.REGISTRY.values():
    for example in variant.op_examples:
      name = variant.name + (f"_{example.name}" if example.name else "")
      op = functools.partial(example.op or variant.op, **example.kwargs)
      cases[name] = (op, tuple(example.shape), example)
  return cases


CASES = _op_cases()
# name -> (op(key, x, rate, *, deterministic), input shape)
VARIANTS = {name: case[:2] for name, case in CASES.items()}
NAMES = sorted(VARIANTS)
KEY = jax.random.key(42)


def _input(shape, dtype=jnp.float32):
  return (jax.random.normal(jax.random.key(7), shape) + 2.0).astype(dtype)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_shape_dtype_and_finite(name, dtype):
  op, shape = VARIANTS[name]
  y = op(KEY, _input(shape, dtype), 0.3)
  assert y.shape == shape and y.dtype == dtype
  assert bool(jnp.all(jnp.isfinite(y)))


@pytest.mark.parametrize("name", NAMES)
def test_rate_zero_is_identity(name):
  op, shape = VARIANTS[name]
  x = _input(shape)
  np.testing.assert_array_equal(op(KEY, x, 0.0), x)
  np.testing.assert_array_equal(jax.jit(op)(KEY, x, jnp.float32(0.0)), x)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("traced", [False, True])
def test_rate_one_gives_zeros_with_finite_gradients(name, traced):
  op, shape = VARIANTS[name]
  x = _input(shape)
  rate = jnp.float32(1.0) if traced else 1.0

  def loss(x, rate):
    return jnp.sum(op(KEY, x, rate) ** 2)

  np.testing.assert_array_equal(op(KEY, x, rate), jnp.zeros_like(x))
  if traced:
    gx, grate = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, rate)
    assert bool(jnp.isfinite(grate))
  else:
    gx = jax.grad(loss)(x, rate)
  assert bool(jnp.all(jnp.isfinite(gx)))
  np.testing.assert_array_equal(gx, jnp.zeros_like(x))


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_returns_inference_output(name):
  op, shape = VARIANTS[name]
  x = _input(shape)
  y = op(KEY, x, 0.25, deterministic=True)
  inference = CASES[name][2].inference
  expected = x if inference is None else inference(x, 0.25)
  np.testing.assert_allclose(y, expected, rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_jit_equals_eager_and_same_key_is_bitwise_identical(name):
  op, shape = VARIANTS[name]
  x = _input(shape)
  jitted = jax.jit(lambda k, x: op(k, x, 0.3))
  eager, compiled = op(KEY, x, 0.3), jitted(KEY, x)
  np.testing.assert_array_equal(eager, op(KEY, x, 0.3))
  np.testing.assert_array_equal(compiled, jitted(KEY, x))
  # Same mask; values may differ in the last ulp where XLA fuses the arithmetic into FMAs.
  np.testing.assert_array_equal(eager == 0, compiled == 0)
  np.testing.assert_allclose(eager, compiled, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_different_keys_give_different_masks_and_vmap_matches_loop(name):
  op, shape = VARIANTS[name]
  x = _input(shape)
  keys = jax.random.split(KEY, 4)
  batched = jax.vmap(lambda k: op(k, x, 0.5))(keys)
  for i in range(4):
    np.testing.assert_array_equal(batched[i], op(keys[i], x, 0.5))
  assert not all(np.array_equal(batched[0], batched[i]) for i in range(1, 4))


@pytest.mark.parametrize("name", NAMES)
def test_traced_rate_does_not_retrace(name):
  op, shape = VARIANTS[name]
  x = _input(shape)
  traces = []

  @jax.jit
  def f(key, x, rate):
    traces.append(None)
    return op(key, x, rate)

  outputs = [f(KEY, x, jnp.float32(r)) for r in (0.1, 0.3, 0.6, 0.9)]
  assert len(traces) == 1
  assert not np.array_equal(outputs[0], outputs[-1])


@pytest.mark.parametrize("name", NAMES)
def test_gradients_finite_in_x_and_rate(name):
  op, shape = VARIANTS[name]
  x = _input(shape)
  gx, grate = jax.grad(lambda x, r: jnp.sum(op(KEY, x, r) ** 2), argnums=(0, 1))(
      x, jnp.float32(0.3)
  )
  assert bool(jnp.all(jnp.isfinite(gx))) and bool(jnp.isfinite(grate))


@pytest.mark.parametrize("name", NAMES)
def test_typed_and_legacy_keys_agree(name):
  op, shape = VARIANTS[name]
  x = _input(shape)
  typed, legacy = jax.random.key(3), jax.random.PRNGKey(3)
  np.testing.assert_array_equal(op(typed, x, 0.4), op(legacy, x, 0.4))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_rates_outside_unit_interval_are_rejected(name, bad):
  op, shape = VARIANTS[name]
  with pytest.raises(ValueError, match=r"`rate` must be a probability in \[0, 1\]"):
    op(KEY, _input(shape), bad)


@pytest.mark.parametrize("impl", ["threefry2x32", "rbg", "unsafe_rbg"])
def test_prng_implementation_follows_the_key(impl):
  key = jax.random.key(0, impl=impl)
  y = dropjax.dropout(key, jnp.ones((256, 256)), 0.5)
  assert abs(float(jnp.mean(y == 0)) - 0.5) < 5 * 0.5 / 256
