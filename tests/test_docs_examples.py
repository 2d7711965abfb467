"""The docs' worked examples run as written: every ```python block of a page, in order."""

import os
import re

import pytest

_DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")
_PAGES = ["own-model.md", "metrics.md", "variants-registry.md"]


def _blocks(page: str) -> list[str]:
  with open(os.path.join(_DOCS, page)) as f:
    return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


@pytest.mark.parametrize("page", _PAGES)
def test_page_examples_run(page, tmp_path):
  blocks = _blocks(page)
  assert blocks, f"docs/{page} has no python example"
  namespace = {"output_dir": str(tmp_path), "__name__": "docs_example"}
  for i, block in enumerate(blocks):
    exec(compile(block, f"docs/{page}[block {i}]", "exec"), namespace)
  if page == "own-model.md":
    assert os.path.getsize(tmp_path / "reliability.png") > 0
    losses = namespace["history"]["loss"]
    assert losses[-1] < losses[0]
    assert 0.0 < float(namespace["model"].fc.rate) < 1.0
