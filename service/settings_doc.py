"""The settings reference (docs/settings.md), generated from `Settings` itself: every field's
environment variable, default and meaning. The meaning is the field's `description`, else
its own comment (on its line; else the comment lines right above it; else the comment heading
its run of lines); a comment block above a field with its own comment heads a group. `make settings-doc` (`resolver settings-doc`)
writes it; tests/unit/test_settings_doc.py checks it is complete and current."""

from __future__ import annotations

import ast
import inspect
import io
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic_core import PydanticUndefined

from service import settings as settings_module
from service.settings import REPO_ROOT, Settings

COMMAND = "make settings-doc"


@dataclass(frozen=True)
class SettingDoc:
    env: str
    default: str
    meaning: str
    section: str


def _comments(source: str) -> dict[int, str]:
    """Line number -> the text of the comment on that line."""
    out: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            out[tok.start[0]] = tok.string.lstrip("#").strip()
    return out


def _block_above(line: int, comments: dict[int, str], lines: list[str]) -> list[int]:
    """The comment-only lines right above `line` (no blank line between), top first."""
    found = []
    n = line - 1
    while n >= 1 and n in comments and lines[n - 1].lstrip().startswith("#"):
        found.append(n)
        n -= 1
    return found[::-1]


def _group_comment(line: int, comments: dict[int, str], lines: list[str]) -> str:
    """The comment block heading the run of lines (no blank line between) `line` is in:
    the meaning of a field that has no comment of its own."""
    n = line - 1
    while n >= 1 and lines[n - 1].strip():
        if n in comments and lines[n - 1].lstrip().startswith("#"):
            return " ".join(comments[k] for k in _block_above(n + 1, comments, lines))
        n -= 1
    return ""


def _default(name: str) -> str:
    field = Settings.model_fields[name]
    if field.default is PydanticUndefined and field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    else:
        value = field.default
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        try:
            return "`<repo>/" + str(value.relative_to(REPO_ROOT)) + "`"
        except ValueError:
            return f"`{value}`"
    return f"`{value}`"


def settings_docs() -> list[SettingDoc]:
    source = inspect.getsource(settings_module)
    lines = source.splitlines()
    comments = _comments(source)
    tree = ast.parse(source)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Settings")
    docs: list[SettingDoc] = []
    section = ""
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        name = node.target.id
        if name not in Settings.model_fields:
            continue
        above = _block_above(node.lineno, comments, lines)
        span = range(node.lineno, (node.end_lineno or node.lineno) + 1)
        own = [comments[n] for n in span if n in comments]
        own = [c for c in own if c and c != "type: ignore"]
        # a comment block right above a field with a comment (or description) of its own
        # opens a section; above a field without one, it is that field's comment
        block = " ".join(comments[n] for n in above)
        description = Settings.model_fields[name].description
        if block and (own or description):
            section, meaning = block, description or " ".join(own)
        else:
            meaning = (
                description
                or " ".join(own)
                or block
                or _group_comment(node.lineno, comments, lines)
            )
        field = Settings.model_fields[name]
        env = field.alias or name.upper()
        docs.append(SettingDoc(env, _default(name), meaning.strip(), section))
    return docs


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def settings_markdown() -> str:
    out = [
        "# Settings",
        "",
        "Every setting of `service/settings.py::Settings`, read from the environment (or a",
        "`.env` file), by its variable name. Generated from `Settings` itself: do not edit;",
        f"run `{COMMAND}` after changing a setting.",
        "",
    ]
    section = None
    for doc in settings_docs():
        if doc.section != section:
            section = doc.section
            out += ["", f"**{_cell(section)}**" if section else "**General**", ""]
            out += ["| variable | default | meaning |", "|---|---|---|"]
        out.append(f"| `{doc.env}` | {_cell(doc.default)} | {_cell(doc.meaning)} |")
    return "\n".join(out).replace("\n\n\n", "\n\n") + "\n"
