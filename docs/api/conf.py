"""Sphinx configuration of the API reference (``make docs``; warnings are errors)."""

import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

project = "dropjax"
author = "the dropjax authors"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
# Google-style sections (Args, Returns, Raises, Example), as written in the docstrings.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# "Attributes:" sections as fields: autodoc documents dataclass fields itself, and two
# descriptions of one attribute are a duplicate-object warning.
napoleon_use_ivar = True
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# Type hints name third-party types (jax.Array, nnx.Module) that this reference does not
# document; they are shown as written rather than cross-referenced.
nitpicky = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_title = "dropjax API reference"
