"""README.md and docs/: links resolve, generated blocks are unique and current, README is short.

Pure file reading: nothing is rendered, fetched or rewritten.
"""

import collections
import importlib.util
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README_MAX_LINES = 250


def _update_docs():
  spec = importlib.util.spec_from_file_location(
      "update_docs", os.path.join(ROOT, "scripts", "update_docs.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


update_docs = _update_docs()
PAGES = update_docs.doc_paths(ROOT)


def _read(path: str) -> str:
  with open(path, encoding="utf-8") as f:
    return f.read()


def _without_fences(text: str) -> str:
  """The text with fenced code blocks blanked out (a ``# comment`` there is no heading)."""
  return re.sub(r"^```.*?^```[^\n]*$", "", text, flags=re.S | re.M)


def _without_code(text: str) -> str:
  """The text with fenced code blocks and inline code spans blanked out."""
  return re.sub(r"`[^`\n]*`", "", _without_fences(text))


def _slug(heading: str) -> str:
  """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
  text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text, not its target
  text = re.sub(r"[^\w\- ]", "", text.strip().lower())
  return text.replace(" ", "-")


def _anchors(path: str) -> set[str]:
  anchors, seen = set(), collections.Counter()
  for line in _without_fences(_read(path)).split("\n"):
    m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
    if m:
      slug = _slug(m.group(1))
      anchors.add(slug if seen[slug] == 0 else f"{slug}-{seen[slug]}")
      seen[slug] += 1
  return anchors


def _links(path: str) -> list[str]:
  text = _without_code(_read(path))
  return re.findall(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", text)


def test_pages_found():
  names = {os.path.relpath(p, ROOT) for p in PAGES}
  assert "README.md" in names and os.path.join("docs", "index.md") in names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: os.path.relpath(p, ROOT))
def test_relative_links_resolve(page):
  broken = []
  for link in _links(page):
    if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", link):  # http:, https:, mailto: ...
      continue
    target, _, anchor = link.partition("#")
    path = os.path.normpath(os.path.join(os.path.dirname(page), target)) if target else page
    if not os.path.exists(path):
      broken.append(f"{link}: no file {os.path.relpath(path, ROOT)}")
    elif anchor and path.endswith(".md") and anchor not in _anchors(path):
      broken.append(f"{link}: no heading #{anchor} in {os.path.relpath(path, ROOT)}")
  assert not broken, f"{os.path.relpath(page, ROOT)}:\n" + "\n".join(broken)


def test_slug_matches_github():
  assert _slug("Concrete dropout: learned rates (Gal, Hron & Kendall 2017, §4.1)") == (
      "concrete-dropout-learned-rates-gal-hron--kendall-2017-41")
  assert _slug("The `:full` protocol") == "the-full-protocol"
  assert _slug("Under `jit` and `vmap`: what is checked when") == (
      "under-jit-and-vmap-what-is-checked-when")


def test_every_marker_pair_appears_once():
  opens, closes, pairs = collections.Counter(), collections.Counter(), collections.Counter()
  for page in PAGES:
    text = _read(page)
    opens.update(re.findall(r"<!-- ([\w-]+) -->", text))
    closes.update(re.findall(r"<!-- /([\w-]+) -->", text))
    pairs.update(m.group(1) for m in update_docs.MARKER.finditer(text))
  assert opens, "no generated blocks found"
  problems = [f"{name}: {opens[name]} opening, {closes[name]} closing, {pairs[name]} pairs"
              for name in sorted(set(opens) | set(closes))
              if (opens[name], closes[name], pairs[name]) != (1, 1, 1)]
  assert not problems, "\n".join(problems)


def test_readme_is_short():
  lines = _read(os.path.join(ROOT, "README.md")).count("\n")
  assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES})"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: os.path.relpath(p, ROOT))
def test_generated_blocks_are_current(page):
  """update_docs changes nothing: every block equals its results/NAME.md."""
  text = _read(page)
  assert update_docs.fill(text, os.path.join(ROOT, "results")) == text, (
      f"{os.path.relpath(page, ROOT)} differs from results/: run python scripts/update_docs.py")
