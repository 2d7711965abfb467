import os

import pytest

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def data_dir() -> str:
  """The real data (../shared/data here). Missing data fails under CI and skips elsewhere."""
  path = os.environ.get("DROPJAX_DATA_DIR") or os.path.join(_REPO, "..", "shared", "data")
  if not os.path.isdir(os.path.join(path, "uci")):
    message = f"No real data at {os.path.abspath(path)}: set DROPJAX_DATA_DIR."
    if os.environ.get("CI"):
      pytest.fail(message)
    pytest.skip(message)
  return path
