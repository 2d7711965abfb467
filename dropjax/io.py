"""Atomic writes: a result file is either the old one or the complete new one, never half.

A file is written to a temporary name in the same folder, flushed to disk (``fsync``) and
renamed over the target, so a crash or a full disk leaves the previous version intact. The
new file gets the permissions ``open()`` would give it (0666 masked by the umask, so
usually 0644), not the 0600 of the temporary file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any

_UMASK_LOCK = threading.Lock()


def _umask() -> int:
  try:  # Linux: read it without changing it (os.umask would, briefly, for every thread)
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("Umask:"):
          return int(line.split()[1], 8)
  except (OSError, ValueError):
    pass
  with _UMASK_LOCK:
    mask = os.umask(0o022)
    os.umask(mask)
  return mask


def new_file_mode() -> int:
  """The permission bits ``open()`` gives a new file: 0666 masked by the process umask.

  Returns:
    E.g. ``0o644`` under the usual umask 022.
  """
  return 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
  """Opens a temporary file that replaces ``path`` when the block ends without an error.

  Before the rename the data is flushed and ``fsync``-ed and the file gets
  `new_file_mode`; the folder is created if needed. On an error the temporary file is
  removed and ``path`` is untouched.

  Args:
    path: the file to (re)write.
    mode: ``"w"`` (text) or ``"wb"`` (binary).

  Yields:
    The open temporary file.
  """
  if mode not in ("w", "wb"):
    raise ValueError(f"`mode` must be 'w' or 'wb'; got {mode!r}.")
  path = os.fspath(path)
  folder = os.path.dirname(path) or "."
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
  try:
    with os.fdopen(fd, mode) as f:
      yield f
      f.flush()
      os.fchmod(f.fileno(), new_file_mode())
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  _fsync_folder(folder)


def _fsync_folder(folder: str) -> None:
  """Makes the rename itself durable; some filesystems cannot open folders, which is fine."""
  try:
    fd = os.open(folder, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
  """Writes ``text`` to ``path`` through a temporary file in the same folder and a rename."""
  with atomic_open(path, "w") as f:
    f.write(text)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
  write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_csv_atomic(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> None:
  """Writes ``rows`` as CSV, atomically. The columns are every key of any row, in the order
  they first appear; a row without a column leaves its cell empty."""
  buffer = io.StringIO()
  if rows:
    writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
    writer.writeheader()
    writer.writerows(rows)
  write_text_atomic(path, buffer.getvalue())
