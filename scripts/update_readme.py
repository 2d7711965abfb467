"""Copies generated result tables into README.md between their markers (never typed by hand).

    python scripts/update_readme.py

For each ``<!-- NAME -->`` ... ``<!-- /NAME -->`` pair in README.md, the text in between is
replaced by ``results/NAME.md`` when that file exists.
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
    path = os.path.join(ROOT, "results", f"{name}.md")
    if not os.path.exists(path):  # not generated yet: leave the section as it is
      return match.group(0)
    table = open(path).read().strip()
    return f"<!-- {name} -->\n{table}\n<!-- /{name} -->"

  updated = re.sub(r"<!-- ([\w-]+) -->\n.*?<!-- /\1 -->", fill, readme, flags=re.S)
  io.write_text_atomic(readme_path, updated)


if __name__ == "__main__":
  main()
