"""Training curves: TensorBoard reads what `ScalarWriter` writes, and the JSON lines agree."""

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from dropjax.summaries import ScalarWriter, crc32c, read_scalars


def _tensorboard_scalars(logdir):
  acc = event_accumulator.EventAccumulator(str(logdir), size_guidance={"scalars": 0})
  acc.Reload()
  return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_reads_the_scalars(tmp_path):
  losses = np.random.default_rng(0).random(50)
  with ScalarWriter(tmp_path) as writer:
    for epoch, loss in enumerate(losses):
      writer.write_scalars(epoch, {"train/loss": loss, "val/nll": 2 * loss})
  read = _tensorboard_scalars(tmp_path)
  assert sorted(read) == ["train/loss", "val/nll"]
  assert [s for s, _ in read["train/loss"]] == list(range(50))
  # simple_value is a float32.
  np.testing.assert_array_equal([v for _, v in read["train/loss"]], losses.astype(np.float32))
  np.testing.assert_array_equal([v for _, v in read["val/nll"]], (2 * losses).astype(np.float32))
  assert read_scalars(tmp_path)["train/loss"] == list(enumerate(losses.tolist()))


def test_a_resumed_run_adds_a_file_and_keeps_the_last_value_per_step(tmp_path):
  with ScalarWriter(tmp_path) as writer:
    for step in range(3):
      writer.write_scalars(step, {"loss": float(step)})
  with ScalarWriter(tmp_path) as writer:  # resumed from the checkpoint of step 1
    for step in range(2, 4):
      writer.write_scalars(step, {"loss": 10.0 + step})
  assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 2
  assert read_scalars(tmp_path)["loss"] == [(0, 0.0), (1, 1.0), (2, 12.0), (3, 13.0)]
  assert [s for s, _ in _tensorboard_scalars(tmp_path)["loss"]][-1] == 3


def test_crc32c_check_values():
  assert crc32c(b"") == 0
  assert crc32c(b"123456789") == 0xE3069283  # RFC 3720, B.4
  assert crc32c(bytes(32)) == 0x8A9136AA


def test_numpy_integer_steps_are_steps(tmp_path):
  with ScalarWriter(tmp_path) as writer:
    writer.write_scalars(np.int64(7), {"loss": 1.0})
  assert read_scalars(tmp_path)["loss"] == [(7, 1.0)]


@pytest.mark.parametrize("step", [-1, 1.5, True, "3"])
def test_bad_steps_are_refused(tmp_path, step):
  with ScalarWriter(tmp_path) as writer, pytest.raises(ValueError, match="`step` must be"):
    writer.write_scalars(step, {"loss": 1.0})
