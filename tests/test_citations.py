"""The project cites only documents that are in the repository (upstream facts: docs/upstream.md)."""
import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A citation: NAME.md followed by a section sign, or one of the notes kept outside the repository.
CITATION = re.compile(r"([\w./-]+\.md)\s*§|\b(REFERENCE|PEERS|DESIGN|STYLE)\.md\b")


def _tracked():
  try:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
  except (OSError, subprocess.CalledProcessError):
    pytest.skip("not a git checkout")
  return [f for f in out.split() if os.path.isfile(os.path.join(ROOT, f))]


def test_every_cited_document_is_in_the_repository():
  docs = {os.path.basename(f) for f in _tracked() if f.endswith(".md")}
  bad = []
  for path in _tracked():
    if path.endswith((".png", ".npz", ".npy", ".gz", ".tsv")):
      continue
    try:
      text = open(os.path.join(ROOT, path), encoding="utf-8").read()
    except UnicodeDecodeError:
      continue
    for match in CITATION.finditer(text):
      name = match.group(1) or match.group(0)
      if os.path.basename(name) not in docs:
        line = text.count("\n", 0, match.start()) + 1
        bad.append(f"{path}:{line}: {match.group(0)}")
  assert not bad, "citations of documents outside the repository:\n" + "\n".join(bad)


def test_cited_sections_exist():
  """Every section sign before a capital names a heading of docs/upstream.md (line breaks, comment signs and string
  continuations inside a citation are ignored)."""
  headings = {line.lstrip("#").strip() for line in open(os.path.join(ROOT, "docs", "upstream.md"))
              if line.startswith("#")}
  missing = []
  for path in _tracked():
    if not path.endswith((".py", ".md")) or path == "docs/upstream.md":
      continue
    text = re.sub(r'\s*"?\s*\n\s*(#\s*)?"?', " ", open(os.path.join(ROOT, path)).read())
    for match in re.finditer(r"§(?=[A-Z])", text):
      if not any(text.startswith(h, match.end()) for h in headings):
        missing.append(f"{path}: {text[match.start():match.end() + 30]}")
  assert not missing, "sections not in docs/upstream.md:\n" + "\n".join(missing)
