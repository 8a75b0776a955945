"""The documentation's file references stay true: every repository path the README and
docs/ name (`service/app.py`, `tests/support/`, `graph/routing.py::NEXT`) exists, and a
`::name` after a Python file names something that file defines. A file that moves without
its mentions fails here instead of leaving the docs to rot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *ROOT.glob("*/README.md")])
SOURCE = r"(?:py|md|yaml|yml|json|toml|sql|js|css|html|cfg|ini|txt)"
# a path with a source file's ending, anywhere in the prose (optionally `::name` after it)
FILE = re.compile(
    rf"(?<![\w./-])((?:[\w.-]+/)+[\w.-]+\.{SOURCE})"  # the path
    r"(?:::([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*))?(?![\w/])"  # and perhaps ::name
)
# a folder, in backticks, two levels or more and with its trailing slash: `tests/support/`
# (`routes/` alone is a folder named in its parent's context)
FOLDER = re.compile(r"`((?:[\w.-]+/){2,})`")
# written by a run and git-ignored: named by the docs, absent from a fresh clone
GENERATED = ("tests/browser/artifacts/", "evals/reports/")


def references(text: str) -> list[tuple[str, str | None]]:
    """(path, name or None) for every repository path `text` mentions."""
    found: list[tuple[str, str | None]] = [(m[1], m[2]) for m in FILE.finditer(text)]
    found += [(m[1], None) for m in FOLDER.finditer(text)]
    # a URL's path (https://host/a/b.py) is not the repository's
    return [
        (path, name)
        for path, name in found
        if "://" not in path and not re.search(rf"https?://\S*{re.escape(path)}", text)
    ]


def defines(source: str, name: str) -> bool:
    """Whether Python `source` defines `name` at its top level (or `Class.attr` within)."""
    head = re.escape(name.split(".")[0])
    return bool(re.search(rf"^(?:async def|def|class) {head}\b|^{head}\b\s*[:=]", source, re.M))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_path_a_doc_names_exists(doc: Path) -> None:
    missing = []
    for path, name in references(doc.read_text()):
        # from the repository's root, or from the doc's own folder (evals/README.md)
        target = next((t for t in (ROOT / path, doc.parent / path) if t.exists()), ROOT / path)
        if path.startswith(GENERATED):
            continue
        if not target.exists():
            missing.append(path)
        elif name and path.endswith(".py") and not defines(target.read_text(), name):
            missing.append(f"{path}::{name}")
    assert missing == []


def test_the_check_finds_paths_and_names(tmp_path: Path) -> None:
    text = (
        "See `service/app.py`, graph/routing.py::NEXT. And `tests/support/`; "
        "not https://example.com/x/y.py, 30/minute or text/event-stream."
    )
    assert references(text) == [
        ("service/app.py", None),
        ("graph/routing.py", "NEXT"),
        ("tests/support/", None),
    ]
    assert defines("NEXT: dict[str, str] = {}\n", "NEXT")
    assert defines("class Settings(BaseSettings):\n", "Settings.database_url")
    assert not defines("def other() -> None:\n    NEXT = 1\n", "NEXT")


def test_the_docs_name_paths_at_all() -> None:
    """The check reads what it should (a broken pattern would pass every doc)."""
    named = {path for doc in DOCS for path, _ in references(doc.read_text())}
    assert {"service/settings.py", "tests/support/"} <= named
