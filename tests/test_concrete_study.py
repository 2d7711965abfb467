"""The concrete-dropout synthetic study on its quick config, and its model's pieces."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from experiments import main
from experiments.concrete_dropout import config as config_lib
from experiments.concrete_dropout import study as concrete_dropout


def test_heteroscedastic_loss_is_the_gaussian_nll_up_to_constants():
  out = jnp.array([[1.0, np.log(4.0)], [0.0, 0.0]])
  y = jnp.array([[3.0], [1.0]])
  expected = np.mean([0.25 * 4 + np.log(4.0), 1.0])
  np.testing.assert_allclose(concrete_dropout.heteroscedastic_loss(out, y, jnp.ones(2)),
                             expected, rtol=1e-6)


def test_model_has_five_learnable_rates_and_their_penalty():
  model = concrete_dropout.HeteroscedasticConcreteMLP(
      8, init_rate=0.1, temperature=0.1, weight_regularizer=1e-2, dropout_regularizer=1e-2,
      rngs=nnx.Rngs(0))
  np.testing.assert_allclose(model.rates(), 0.1, rtol=1e-5)
  assert model(jnp.ones((3, 1))).shape == (3, 2)
  grads = nnx.grad(lambda m: m.penalty())(model)
  logits = [grads["drops"][i]["rate_logit"][...] for i in range(5)]
  assert all(np.isfinite(float(g)) and float(g) != 0 for g in logits)


@pytest.mark.slow
def test_quick_study_runs_and_reports_published_rates(tmp_path):
  out = main.run_study(config_lib.get_config("quick"), str(tmp_path))
  rows = out["rows"]
  assert [r["n"] for r in rows] == [10, 100]
  assert rows[0]["published"] == [0.077, 0.404, 0.404, 0.403]
  for r in rows:
    assert all(0 < p < 1 for p in r["rates_mean"]) and np.isfinite(r["rmse"])
  assert "(0.404)" in (tmp_path / "results.md").read_text()
  again = main.run_study(config_lib.get_config("quick"), str(tmp_path))
  assert again["rows"] == rows


@pytest.mark.slow
def test_concrete_mlp_study_records_rates_per_epoch_and_resumes(tmp_path):
  from experiments.concrete_mnist import config as mnist_config

  config = mnist_config.get_config("quick")
  out = main.run_study(config, str(tmp_path))
  concrete, fixed = out["rows"]
  assert len(concrete["rate_history"]) == config.epochs + 1
  np.testing.assert_allclose(concrete["rate_history"][0], 0.1, rtol=1e-5)
  assert concrete["rates"] == concrete["rate_history"][-1]
  assert concrete["rates"] != concrete["rate_history"][0]
  assert fixed["rates"] == [0.2, 0.5] and fixed["rate_history"] == []
  assert all(0 <= r[k] <= 1 for r in out["rows"] for k in ("error_det", "error_mc"))
  assert main.run_study(config, str(tmp_path))["rows"] == out["rows"]


@pytest.mark.slow
def test_the_config_picks_the_generator_of_every_key(tmp_path):
  """``config.prng_impl``: the same study with the keyed-hash PRNG draws other masks, so
  other numbers, and its workdir records the choice."""
  config = config_lib.get_config("quick")
  threefry = main.run_study(config, str(tmp_path / "threefry"))
  config.prng_impl = "keyed_hash"
  hashed = main.run_study(config, str(tmp_path / "hash"))
  assert [r["rates_mean"] for r in hashed["rows"]] != [r["rates_mean"] for r in threefry["rows"]]
  assert '"prng_impl": "keyed_hash"' in (tmp_path / "hash" / "config.json").read_text()
