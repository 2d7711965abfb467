"""The row format of the bad-input table (`test_bad_inputs.py`).

Each ``bad_inputs_<area>.py`` module next to this one lists ``CASES``: one `Case` per kind
of bad input. A case calls the public API (or the command line) the way a user would and
must raise ``error`` with a message containing every word in ``words`` (case-insensitive):
the argument's name, the allowed values and, for files, where we looked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence


@dataclasses.dataclass(frozen=True)
class Case:
  id: str
  call: Callable[[], object]
  error: type[BaseException] | tuple[type[BaseException], ...]
  words: Sequence[str]
