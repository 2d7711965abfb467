"""The library install is light: jax, flax, optax and numpy, and nothing else.

Optional conveniences import their packages through `dropjax._extras.require`, which names
the extra to install. The subprocess test hides every extra's packages and imports the whole
library, as `pip install .` on a fresh machine would see it.
"""

import ast
import importlib.metadata
import os
import subprocess
import sys
import textwrap

import tomllib

from dropjax import _extras

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CORE = {"jax", "flax", "optax", "numpy"}


def _pyproject() -> dict:
  with open(os.path.join(_ROOT, "pyproject.toml"), "rb") as f:
    return tomllib.load(f)


def _name(requirement: str) -> str:
  for sep in "<>=[; ":
    requirement = requirement.split(sep)[0]
  return requirement.lower()


def test_core_dependencies_are_the_four():
  deps = {_name(r) for r in _pyproject()["project"]["dependencies"]}
  assert deps == _CORE


def test_every_optional_package_maps_to_an_existing_extra():
  extras = _pyproject()["project"]["optional-dependencies"]
  for package, extra in _extras.EXTRA_OF.items():
    assert extra in extras, (package, extra)


# Packages that the core four install themselves (checked below), so importing them adds
# nothing to `pip install .`: orbax-checkpoint comes with flax.
_COMES_WITH = {"orbax": ("flax", "orbax-checkpoint")}


def test_packages_used_through_a_core_dependency_come_with_it():
  for _, (owner, distribution) in _COMES_WITH.items():
    required = {_name(r) for r in importlib.metadata.requires(owner)
                if "extra ==" not in r}
    assert distribution in required, (
        f"{owner} no longer installs {distribution}: declare it in pyproject.toml")


def test_library_imports_only_core_and_stdlib_at_module_level():
  """Module-level imports in dropjax/ are the stdlib, the core packages (with what they
  install) or dropjax."""
  allowed = (_CORE | set(_COMES_WITH) | {"jaxlib", "dropjax", "__future__"}
             | set(sys.stdlib_module_names))
  offenders = []
  for folder, _, files in os.walk(os.path.join(_ROOT, "dropjax")):
    for name in files:
      if not name.endswith(".py"):
        continue
      path = os.path.join(folder, name)
      with open(path) as f:
        tree = ast.parse(f.read())
      for node in tree.body:  # module level only: function bodies import lazily
        if isinstance(node, ast.Import):
          roots = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
          roots = [node.module.split(".")[0]]
        else:
          continue
        offenders += [f"{os.path.relpath(path, _ROOT)}: {r}" for r in roots if r not in allowed]
  assert not offenders, offenders


_HIDDEN_EXTRAS_PROBE = textwrap.dedent("""
  import importlib, pkgutil, sys

  HIDDEN = {"sklearn", "scipy", "matplotlib", "tensorflow_datasets", "tensorflow",
            "array_record", "ml_collections"}

  class Hide:
    def find_spec(self, name, path=None, target=None):
      if name.split(".")[0] in HIDDEN:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
      return None

  sys.meta_path.insert(0, Hide())
  import jax, jax.numpy as jnp
  import dropjax
  for info in pkgutil.walk_packages(dropjax.__path__, "dropjax."):
    if info.name == "dropjax.data.tfds_idx":
      try:
        importlib.import_module(info.name)
      except ImportError as err:
        assert "dropjax[tfds]" in str(err), err
      else:
        raise AssertionError("tfds_idx imported without tensorflow_datasets")
      continue
    importlib.import_module(info.name)
  y = dropjax.dropout(jax.random.key(0), jnp.ones((1000,)), 0.5)
  assert 400 < int((y == 0).sum()) < 600
  from dropjax.data import load_digits
  try:
    load_digits()
  except ImportError as err:
    assert "dropjax[experiments]" in str(err), err
  else:
    raise AssertionError("load_digits ran without scikit-learn")
  print("ok")
""")


def test_library_works_without_the_extras():
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  result = subprocess.run([sys.executable, "-c", _HIDDEN_EXTRAS_PROBE], capture_output=True,
                          text=True, cwd=_ROOT, env=env, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().endswith("ok")
