"""Every repository path that the docs and the docstrings cite exists: README.md, docs/*.md and the docstrings of
the package's modules, classes and functions (harness/, methods/, tasks/). A path is a word such as
`harness/store.py`, `docs/formulas.md`, `tests/test_store.py` or `leaderboards/toy/results.jsonl`; one that goes
on with a placeholder (`methods/<name>.py`, `leaderboards/*/`) or holds a metavariable in capitals
(`leaderboards/T/`, T the task) is a pattern, not a path, and is left alone. A
markdown link to a relative file (`[results.md](results.md#hash-scheme)`) is checked too."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOP = ("harness", "methods", "tasks", "sweeps", "docs", "tests", "benchmarks", "leaderboards")
CITED = re.compile(rf"(?<![\w./<>-])((?:{'|'.join(TOP)})/[\w./-]*)")
LINK = re.compile(r"\]\((?!https?://|mailto:|#)([^)#\s]+)")
PATTERN = ("<", "*", "{", "[")  # what follows a cited path that is a pattern


def docs() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def sources() -> list[Path]:
    return [p for top in ("harness", "methods", "tasks") for p in sorted((ROOT / top).rglob("*.py"))]


def docstrings(path: Path) -> str:
    tree = ast.parse(path.read_text())
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef))]
    return "\n".join(doc for n in nodes if (doc := ast.get_docstring(n, clean=False)))


def cited(text: str) -> set[str]:
    """The repository paths that `text` cites (patterns aside), without trailing punctuation."""
    found = set()
    for m in CITED.finditer(text):
        if text[m.end() : m.end() + 1] in PATTERN:
            continue
        path = m.group(1).rstrip(".-")
        if path.rstrip("/") not in TOP and not any(part.isupper() for part in path.split("/")):
            found.add(path)
    return found


def missing(paths: set[str], base: Path = ROOT) -> list[str]:
    return sorted(p for p in paths if not (base / p).exists())


@pytest.mark.parametrize("doc", docs(), ids=lambda p: p.name)
def test_every_path_a_doc_cites_exists(doc: Path):
    text = doc.read_text()
    assert missing(cited(text)) == []
    links = {link for link in LINK.findall(text) if not link.startswith("/")}
    assert missing(links, doc.parent) == []


def test_every_path_a_docstring_cites_exists():
    broken = {str(p.relative_to(ROOT)): missing(cited(docstrings(p))) for p in sources()}
    assert {where: paths for where, paths in broken.items() if paths} == {}


def test_the_walker_finds_paths_and_leaves_patterns_and_urls_alone():
    text = (
        "see harness/store.py::replacing, `docs/formulas.md#kl` and tests/test_docs.py; "
        "methods/<name>.py, leaderboards/*/results.jsonl and leaderboards/T/ are patterns; "
        "https://example.org/docs/nowhere.md is a web page; harness/nowhere.py is broken."
    )
    assert cited(text) == {"harness/store.py", "docs/formulas.md", "tests/test_docs.py", "harness/nowhere.py"}
    assert missing(cited(text)) == ["harness/nowhere.py"]
