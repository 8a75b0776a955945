"""`.env.example` names only settings that exist: each `# NAME=` line is a Settings field
(by its environment name) or a variable another library reads (AWS, OpenTelemetry,
LangSmith), so a copied line never silently does nothing."""

from __future__ import annotations

import re
from pathlib import Path

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
READ_ELSEWHERE = ("AWS_", "OTEL_", "LANGSMITH_")


def _names() -> list[str]:
    text = (ROOT / ".env.example").read_text()
    return re.findall(r"^#\s*([A-Z][A-Z0-9_]*)=", text, flags=re.M)


def _setting_names() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(name.upper())
        if isinstance(field.validation_alias, str):
            names.add(field.validation_alias.upper())
        if field.alias:
            names.add(field.alias.upper())
    return names


def test_every_name_in_env_example_is_a_setting() -> None:
    names = _names()
    assert len(names) > 20
    known = _setting_names()
    unknown = [n for n in names if n not in known and not n.startswith(READ_ELSEWHERE)]
    assert unknown == []
