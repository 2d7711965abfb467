"""Every kind of bad input we know of is refused loudly, with a message that says what is wrong.

The rows live in ``bad_inputs_*.py`` beside this file, one module per area (ops, metrics,
MC sampling, data files, configs and resume); see `bad_input_case.Case`.
"""

import glob
import importlib
import os

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
_MODULES = sorted(
    os.path.splitext(os.path.basename(p))[0]
    for p in glob.glob(os.path.join(_HERE, "bad_inputs_*.py"))
)
CASES = [case for name in _MODULES for case in importlib.import_module(name).CASES]


def test_case_ids_are_unique():
  ids = [case.id for case in CASES]
  assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_refused(case):
  with pytest.raises(case.error) as info:
    case.call()
  message = str(info.value).lower()
  missing = [w for w in case.words if w.lower() not in message]
  assert not missing, f"message lacks {missing}: {info.value}"
