"""Optional dependencies: the library itself needs only jax, flax, optax and numpy.

A few conveniences use packages from the install extras (``pip install 'dropjax[NAME]'``);
they import them through `require`, which says which extra to install when one is missing.
"""

import importlib
from types import ModuleType

# The extra that provides each optional top-level package (pyproject.toml's
# [project.optional-dependencies]).
EXTRA_OF = {
    "sklearn": "experiments",
    "scipy": "experiments",
    "matplotlib": "experiments",
    "tensorflow_datasets": "tfds",
}


def require(module: str, purpose: str) -> ModuleType:
  """Imports ``module`` or raises an ImportError naming the extra that installs it.

  Args:
    module: the dotted module name, e.g. ``"sklearn.datasets"``.
    purpose: what needs it, for the message, e.g. ``"load_digits"``.

  Returns:
    The imported module.
  """
  try:
    return importlib.import_module(module)
  except ImportError as err:
    extra = EXTRA_OF[module.split(".")[0]]
    raise ImportError(
        f"{purpose} needs the optional package {module.split('.')[0]!r}, which the library "
        f"install (jax, flax, optax, numpy) does not include; install it with "
        f"pip install 'dropjax[{extra}]' (from a checkout: pip install '.[{extra}]').") from err
