"""The docs' worked examples run as written: every ```python block of a page, in order.

README.md's only python block is its API tour. docs/training.md, docs/mc-dropout.md and
docs/data.md are not listed: their blocks are fragments (they need a model, data or a data dir).
"""

import os
import re

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PAGES = ["docs/own-model.md", "docs/metrics.md", "docs/variants-registry.md", "docs/new-study.md",
          "README.md"]


def _blocks(page: str) -> list[str]:
  with open(os.path.join(_ROOT, page)) as f:
    return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


@pytest.mark.parametrize("page", _PAGES)
def test_page_examples_run(page, tmp_path):
  blocks = _blocks(page)
  assert blocks, f"{page} has no python example"
  namespace = {"output_dir": str(tmp_path), "__name__": "docs_example"}
  for i, block in enumerate(blocks):
    exec(compile(block, f"{page}[block {i}]", "exec"), namespace)
  if page == "docs/own-model.md":
    assert os.path.getsize(tmp_path / "reliability.png") > 0
    losses = namespace["history"]["loss"]
    assert losses[-1] < losses[0]
    assert 0.0 < float(namespace["model"].fc.rate) < 1.0
