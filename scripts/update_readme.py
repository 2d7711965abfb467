"""Copies generated result tables into README.md between their markers (never typed by hand).

    python scripts/update_readme.py

For each ``<!-- NAME -->`` ... ``<!-- /NAME -->`` pair in README.md, the text in between is
replaced by ``results/NAME.md`` (the marker's first line stays as it is).
"""

import os
import re

from dropjax import io

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
  readme_path = os.path.join(ROOT, "README.md")
  readme = open(readme_path).read()

  def fill(match):
    name = match.group(1)
    table = open(os.path.join(ROOT, "results", f"{name}.md")).read().strip()
    return f"<!-- {name} -->\n{table}\n<!-- /{name} -->"

  updated = re.sub(r"<!-- ([\w-]+) -->\n.*?<!-- /\1 -->", fill, readme, flags=re.S)
  io.write_text_atomic(readme_path, updated)


if __name__ == "__main__":
  main()
