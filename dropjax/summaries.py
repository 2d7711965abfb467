"""Training curves: per-epoch scalars as TensorBoard event files and JSON lines.

`ScalarWriter` writes the TensorBoard event-file format directly (TFRecord framing around
``Event`` protocol buffers holding ``simple_value`` summaries), so no TensorFlow, tensorboardX
or protobuf runtime is needed to write it; ``tensorboard --logdir <workdir>`` reads it. The same
scalars go to ``scalars.jsonl`` beside it, one JSON object per line, for scripts.

Example:
  >>> import tempfile
  >>> from dropjax.summaries import ScalarWriter, read_scalars
  >>> logdir = tempfile.mkdtemp()
  >>> with ScalarWriter(logdir) as writer:
  ...   writer.write_scalars(1, {"loss": 0.5, "val_nll": 0.7})
  ...   writer.write_scalars(2, {"loss": 0.25})
  >>> read_scalars(logdir)["loss"]
  [(1, 0.5), (2, 0.25)]
"""

from __future__ import annotations

import json
import numbers
import os
import socket
import struct
import time
from collections.abc import Mapping
from typing import Any

JSONL_NAME = "scalars.jsonl"


def _crc32c_table() -> list[int]:
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    table.append(crc)
  return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
  """CRC-32C (Castagnoli), the checksum of TFRecord framing.

  Args:
    data: the bytes.

  Returns:
    The checksum as an unsigned 32-bit int.

  Example:
    >>> hex(crc32c(b"123456789"))  # the standard check value
    '0xe3069283'
  """
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _record(data: bytes) -> bytes:
  length = struct.pack("<Q", len(data))
  return (length + struct.pack("<I", _masked_crc(length)) + data
          + struct.pack("<I", _masked_crc(data)))


def _varint(value: int) -> bytes:
  out = bytearray()
  while True:
    byte = value & 0x7F
    value >>= 7
    if value:
      out.append(byte | 0x80)
    else:
      out.append(byte)
      return bytes(out)


def _field(number: int, wire_type: int) -> bytes:
  return _varint(number << 3 | wire_type)


def _bytes_field(number: int, payload: bytes) -> bytes:
  return _field(number, 2) + _varint(len(payload)) + payload


def _event(wall_time: float, step: int, *, file_version: str | None = None,
           summary: bytes | None = None) -> bytes:
  # Event: wall_time = 1 (double), step = 2 (int64), file_version = 3, summary = 5.
  out = _field(1, 1) + struct.pack("<d", wall_time) + _field(2, 0) + _varint(step)
  if file_version is not None:
    out += _bytes_field(3, file_version.encode())
  if summary is not None:
    out += _bytes_field(5, summary)
  return out


def _scalar_summary(tag: str, value: float) -> bytes:
  # Summary.value = 1 (repeated Value); Value.tag = 1, Value.simple_value = 2 (float).
  entry = _bytes_field(1, tag.encode()) + _field(2, 5) + struct.pack("<f", value)
  return _bytes_field(1, entry)


class ScalarWriter:
  """Writes scalars per step to a TensorBoard event file and ``scalars.jsonl`` in ``logdir``.

  Each writer opens a new event file (TensorBoard reads every file in the folder), so a
  resumed run adds a file instead of rewriting one; ``scalars.jsonl`` is appended to.
  Values are flushed on every `write_scalars`, so a killed run keeps what it wrote.

  Args:
    logdir: the folder (created if absent), for example a study's workdir.
  """

  def __init__(self, logdir: str | os.PathLike):
    self.logdir = os.fspath(logdir)
    os.makedirs(self.logdir, exist_ok=True)
    now = time.time()
    name = f"events.out.tfevents.{now:.6f}.{socket.gethostname()}.{os.getpid()}"
    self._events = open(os.path.join(self.logdir, name), "ab")
    self._jsonl = open(os.path.join(self.logdir, JSONL_NAME), "a")
    self._events.write(_record(_event(now, 0, file_version="brain.Event:2")))
    self._events.flush()

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    """Records ``{name: value}`` at ``step``.

    Args:
      step: the step (for example the epoch); a non-negative int.
      scalars: names and numbers (Python or NumPy/JAX scalars).
    """
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
      raise ValueError(f"`step` must be a non-negative int; got {step!r}.")
    step = int(step)
    now = time.time()
    values = {str(k): float(v) for k, v in scalars.items()}
    for tag, value in values.items():
      self._events.write(_record(_event(now, step, summary=_scalar_summary(tag, value))))
    self._jsonl.write(json.dumps({"step": step, "wall_time": now, **values}) + "\n")
    self.flush()

  def flush(self) -> None:
    """Pushes what was written to the operating system."""
    self._events.flush()
    self._jsonl.flush()

  def close(self) -> None:
    """Flushes and closes both files."""
    self.flush()
    self._events.close()
    self._jsonl.close()

  def __enter__(self) -> ScalarWriter:
    return self

  def __exit__(self, *exc_info: object) -> None:
    self.close()


def read_scalars(logdir: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
  """Reads ``scalars.jsonl`` back: ``{name: [(step, value), ...]}`` in writing order.

  A step written twice (a run resumed from a checkpoint older than its last scalars)
  keeps its last value.

  Args:
    logdir: a folder written by `ScalarWriter`.

  Returns:
    The series per name, sorted by step.
  """
  series: dict[str, dict[int, float]] = {}
  with open(os.path.join(os.fspath(logdir), JSONL_NAME)) as f:
    for line in f:
      row = json.loads(line)
      step = row.pop("step")
      row.pop("wall_time")
      for name, value in row.items():
        series.setdefault(name, {})[step] = value
  return {name: sorted(values.items()) for name, values in series.items()}
