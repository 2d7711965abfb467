"""Copies generated result tables into README.md and docs/ between markers (never typed by hand).

    python scripts/update_docs.py

For each ``<!-- NAME -->`` ... ``<!-- /NAME -->`` pair in README.md and in every
``docs/**/*.md``, the text in between is replaced by ``results/NAME.md`` when that file exists.
A file is rewritten (atomically) only when its text changed.
"""

import glob
import os
import re

from dropjax import io

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKER = re.compile(r"<!-- ([\w-]+) -->\n.*?<!-- /\1 -->", flags=re.S)


def doc_paths(root: str = ROOT) -> list[str]:
  """README.md and every markdown page under docs/ (build outputs excluded), in a fixed order."""
  pages = sorted(glob.glob(os.path.join(root, "docs", "**", "*.md"), recursive=True))
  pages = [p for p in pages if "_build" not in os.path.relpath(p, root).split(os.sep)]
  return [os.path.join(root, "README.md"), *pages]


def fill(text: str, results_dir: str = os.path.join(ROOT, "results")) -> str:
  """``text`` with every marker pair's content replaced by ``results_dir/NAME.md``."""

  def replace(match):
    name = match.group(1)
    path = os.path.join(results_dir, f"{name}.md")
    if not os.path.exists(path):  # not generated yet: leave the section as it is
      return match.group(0)
    with open(path) as f:
      table = f.read().strip()
    return f"<!-- {name} -->\n{table}\n<!-- /{name} -->"

  return MARKER.sub(replace, text)


def main():
  for path in doc_paths():
    with open(path) as f:
      text = f.read()
    updated = fill(text)
    if updated != text:
      io.write_text_atomic(path, updated)
      print(f"updated {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
  main()
