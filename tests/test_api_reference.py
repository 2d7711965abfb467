"""The API reference (docs/api, built by `make docs`) covers every public module."""

import glob
import os
import pkgutil
import re

import dropjax

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_public_module_has_a_reference_entry():
  documented = set()
  for page in glob.glob(os.path.join(_ROOT, "docs", "api", "*.rst")):
    with open(page) as f:
      documented |= set(re.findall(r"^\.\. automodule:: (\S+)$", f.read(), flags=re.M))
  public = {"dropjax"} | {
      info.name for info in pkgutil.walk_packages(dropjax.__path__, "dropjax.")
      if not any(part.startswith("_") for part in info.name.split("."))}
  # uci_sha256 is a data table (file checksums), not API.
  public.discard("dropjax.data.uci_sha256")
  assert public - documented == set(), "add these modules to a page under docs/api/"
  assert documented - public == set(), "docs/api names modules that do not exist"
