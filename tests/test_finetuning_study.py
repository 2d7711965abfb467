"""The fine-tuning study: its draws, its models, end to end on the quick config, resumed."""

import os

import jax
import numpy as np
import pytest
from flax import nnx

from dropjax import layers
from dropjax.data import Split
from experiments import config_checks, main
from experiments.finetuning import config as config_lib
from experiments.finetuning import study as finetuning


def _split(labels):
  labels = np.asarray(labels, np.int32)
  return Split(np.arange(len(labels), dtype=np.float32)[:, None, None, None]
               * np.ones((1, 4, 4, 1), np.float32), labels)


def test_classes_are_kept_and_relabelled_in_the_given_order():
  split = _split([5, 1, 7, 5, 9, 0, 7])
  kept = finetuning.classes_of(split, (7, 5, 9))
  np.testing.assert_array_equal(kept.labels, [1, 0, 1, 2, 0])
  np.testing.assert_array_equal(kept.images[:, 0, 0, 0], [0, 2, 3, 4, 6])


def test_a_draw_is_balanced_fixed_by_its_key_and_refuses_too_few_images():
  split = _split(np.repeat(np.arange(3), 10))
  draw = finetuning.balanced_draw(split, 12, jax.random.key(0))
  np.testing.assert_array_equal(np.bincount(draw.labels), [4, 4, 4])
  again = finetuning.balanced_draw(split, 12, jax.random.key(0))
  np.testing.assert_array_equal(draw.images, again.images)
  other = finetuning.balanced_draw(split, 12, jax.random.key(1))
  assert not np.array_equal(draw.images, other.images)
  with pytest.raises(ValueError, match="class 0 has 10 training images; a draw of 33 needs 11"):
    finetuning.balanced_draw(split, 33, jax.random.key(0))


def test_lora_and_full_models_start_as_the_same_network():
  config = config_lib.get_config("quick")
  shape = (8, 8, 1)
  pretrained = nnx.state(finetuning.build_model(
      config, 5, shape, attention_rate=0.1, ffn_rate=0.1, other_rate=0.1,
      rngs=nnx.Rngs(3)), nnx.Param)
  full = finetuning.finetune_model(config, pretrained, "full", shape, dropout_rate=0.1,
                                   lora_rate=0.0, rngs=nnx.Rngs(7))
  lora = finetuning.finetune_model(config, pretrained, "lora", shape, dropout_rate=0.1,
                                   lora_rate=0.05, rngs=nnx.Rngs(7))
  x = jax.random.uniform(jax.random.key(0), (6, *shape))
  full.eval()
  lora.eval()
  np.testing.assert_allclose(lora(x), full(x), rtol=1e-5, atol=1e-6)
  # The body is the pretrained one; the head is new.
  np.testing.assert_array_equal(full.blocks[0].ffn1.kernel[...],
                                pretrained["blocks"][0]["ffn1"]["kernel"][...])
  assert not np.array_equal(full.head.kernel[...], pretrained["head"]["kernel"][...])
  trainable = {"/".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(lora, nnx.Param))}
  assert all(p.startswith("head/") or "/lora_" in p for p in trainable)
  assert jax.tree.leaves(nnx.state(lora, layers.Frozen))


@pytest.mark.slow
def test_quick_study_pairs_every_setting_with_no_dropout_and_resumes(tmp_path):
  config = config_lib.get_config("quick")
  config.train_sizes = (20,)  # as tests/test_studies.py cuts it: one compilation for both
  out = main.run_study(config, str(tmp_path))
  rows = out["rows"]
  assert [(r["method"], r["dropout_rate"], r["lora_rate"]) for r in rows] == [
      ("full", 0.0, 0.0), ("full", 0.1, 0.0),
      ("lora", 0.0, 0.0), ("lora", 0.0, 0.05), ("lora", 0.1, 0.0), ("lora", 0.1, 0.05)]
  for row in rows:
    assert 0 <= row["error"] <= 1 and np.isfinite(row["nll"]) and row["nll_se"] >= 0
    baseline = row["dropout_rate"] == 0 and row["lora_rate"] == 0
    assert ("d_nll" in row) == (not baseline)
  assert {v["setting"].split(" (")[0] for v in out["common_settings"]} == {
      "attention/feed-forward dropout 0.1", "lora_dropout 0.05",
      "attention/feed-forward 0.1 and lora_dropout 0.05"}
  assert len(out["timing"]) == len(rows) and all(t["step_ms"] > 0 for t in out["timing"])
  assert all(run["steps"] >= config.finetune_steps for run in out["runs"])
  text = (tmp_path / "results.md").read_text()
  assert "| setting | ours | reference | source |" in text
  # A run lost before the report is recomputed with the same numbers.
  os.remove(tmp_path / "runs" / "lora" / "n20" / "seed1.json")
  again = main.run_study(config, str(tmp_path))
  untimed = lambda runs: [{k: v for k, v in r.items() if k != "seconds"} for r in runs]
  assert untimed(again["runs"]) == untimed(out["runs"])
  assert again["runs"][:3] == out["runs"][:3]  # the others were read back as they were


@pytest.mark.parametrize("field,value,message", [
    ("train_sizes", (20, 33), "33 is not a multiple of the 5 fine-tuning classes"),
    ("dropout_rates", (0.1, 0.2), "starting at 0"),
    ("lora_rates", (0.0, 0.2, 0.1), "increasing rates"),
    ("methods", ("full", "adapter"), "'lora'"),
    ("finetune_classes", (5, 5, 6), "distinct digits"),
    ("num_heads", 3, "multiple of config.num_heads"),
    ("lora_rank", 0, "positive integers"),
    ("lora_alpha", -1.0, "positive finite numbers"),
    ("num_seeds", 1, ">= 2"),
])
def test_bad_configs_are_refused(field, value, message):
  config = config_lib.get_config("quick")
  config[field] = value
  with pytest.raises(config_checks.ConfigError, match=message):
    config_checks.check_config(config)


def test_a_grid_point_trains_as_it_would_alone():
  """The vmapped grid is a batch of independent runs: rate 0 of the (0, 0.1) grid ends as
  a run of rate 0 alone (up to float reassociation in the batched program)."""
  from experiments import datasets

  config = config_lib.get_config("quick")
  data = datasets.load_classification("digits")
  pool = finetuning.classes_of(data.train, config.finetune_classes)
  test = finetuning.classes_of(data.test, config.finetune_classes)
  shape = pool.images.shape[1:]
  pretrained = nnx.state(finetuning.build_model(
      config, 5, shape, attention_rate=0.1, ffn_rate=0.1, other_rate=0.1,
      rngs=nnx.Rngs(3)), nnx.Param)
  grid = finetuning.finetune_run(config, pretrained, pool, test, shape, "full", 20, 1)
  config.dropout_rates = (0.0,)
  alone = finetuning.finetune_run(config, pretrained, pool, test, shape, "full", 20, 1)
  assert grid["settings"][0]["nll"] == pytest.approx(alone["settings"][0]["nll"], abs=1e-4)
  assert grid["settings"][0]["error"] == alone["settings"][0]["error"]
  assert grid["settings"][1]["nll"] != alone["settings"][0]["nll"]  # the rate mattered
