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
# A cold suite spends most of its time in XLA's LLVM back end, and the tests' programs are
# small: LLVM's -O0 cuts the compile-bound tests by 15-35% (cold, one core: the study
# sharding test 124 s -> 83 s, a variant-comparison quick run 66 s -> 56 s) and slows the
# few compute-bound ones 2-4x (tests/test_mc.py's 10,000 samples 7.5 s -> 29 s,
# docs/own-model.md's example 16 s -> 58 s). The suite took 14 minutes on 2 CPUs with it.
# No test compares with numbers computed outside the suite, and XLA's own passes (fusion,
# layout) still run; the studies and benchmarks run at XLA's default. So the bitwise
# properties the tests check (resumed == uninterrupted, chunked == unchunked) are checked on
# -O0 builds; DROPJAX_TEST_XLA_OPT=default runs the suite at XLA's default to check them
# there. Added once: xdist workers inherit the flags, and a repeated flag would change the
# cache key.
_TEST_XLA_FLAG = "--xla_backend_optimization_level=0"
_flags = os.environ.get("XLA_FLAGS", "").split()
if os.environ.get("DROPJAX_TEST_XLA_OPT") != "default" and _TEST_XLA_FLAG not in _flags:
  os.environ["XLA_FLAGS"] = " ".join([*_flags, _TEST_XLA_FLAG])

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
