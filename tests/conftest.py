import os

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# JAX's persistent compilation cache, shared by the xdist workers and the subprocesses that
# tests start: the suite compiles the same programs many times (each study's quick config
# runs in its own tests, twice in tests/test_studies.py, and again in tests/test_reproduce.py),
# and compilation is most of a quick run. A cached executable is the compiled program itself,
# so results do not change (bitwise), only the time. Set before jax is imported; delete
# .pytest_cache/jax to time cold compiles.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(_REPO, ".pytest_cache", "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import pytest  # noqa: E402


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
