import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dropjax


def test_schedule_values():
  np.testing.assert_allclose(dropjax.constant_schedule(0.3)(123), 0.3)
  decay = dropjax.linear_decay_schedule(0.5, 0.1, 100, begin_step=10)
  np.testing.assert_allclose([decay(0), decay(60), decay(500)], [0.5, 0.3, 0.1], rtol=1e-6)
  cur = dropjax.curriculum_schedule(0.4, 1000, off_fraction=0.2)
  values = np.array([cur(t) for t in (0, 100, 500, 799, 800, 999)])
  np.testing.assert_allclose(values[:4], 0.4 * -np.expm1(-0.01 * np.array([0, 100, 500, 799])),
                             rtol=1e-5)
  np.testing.assert_array_equal(values[4:], 0.0)
  assert np.all(np.diff(values[:4]) > 0)


def test_scheduled_rate_drives_an_op_without_recompiling():
  schedule = dropjax.linear_decay_schedule(0.9, 0.1, 10)
  traces = []

  @jax.jit
  def step(key, x, t):
    traces.append(None)
    return dropjax.dropout(jax.random.fold_in(key, t), x, schedule(t))

  x = jnp.ones(1 << 16)
  fractions = [float(jnp.mean(step(jax.random.key(0), x, t) == 0)) for t in range(0, 11, 2)]
  assert len(traces) == 1
  np.testing.assert_allclose(fractions, [0.9, 0.74, 0.58, 0.42, 0.26, 0.1], atol=0.01)


def test_schedule_arguments_are_validated():
  with pytest.raises(ValueError, match="`init_rate`"):
    dropjax.linear_decay_schedule(1.2, 0.1, 10)
  with pytest.raises(ValueError, match="`total_steps`"):
    dropjax.curriculum_schedule(0.5, 0)
