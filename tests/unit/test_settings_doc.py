"""docs/settings.md is generated from `Settings` itself: complete (every setting, with a
default and a meaning) and current. Other changes add settings: regenerate with the
command in the failure message."""

from __future__ import annotations

import subprocess
from pathlib import Path

from service.settings import Settings
from service.settings_doc import COMMAND, settings_docs, settings_markdown
from tests.support.servers import entry_point

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs/settings.md"


def test_every_setting_has_a_meaning() -> None:
    docs = {d.env: d for d in settings_docs()}
    names = {f.alias or name.upper() for name, f in Settings.model_fields.items()}
    assert set(docs) == names
    missing = sorted(env for env, d in docs.items() if not d.meaning)
    assert not missing, (
        f"settings without a meaning: {missing}. Give each a comment on its line in "
        f"service/settings.py (or a Field description), then run `{COMMAND}`"
    )


def test_settings_reference_is_complete_and_current() -> None:
    committed = DOC.read_text() if DOC.exists() else ""
    for name, field in Settings.model_fields.items():
        env = field.alias or name.upper()
        assert f"| `{env}` |" in committed, f"docs/settings.md does not list {env}: run `{COMMAND}`"
    assert committed == settings_markdown(), f"docs/settings.md is stale: run `{COMMAND}`"


def test_the_reference_names_the_undocumented_ones_of_issue_19() -> None:
    text = DOC.read_text()
    for env in ("SEED_DEMO", "AUTO_MIGRATE", "HOST", "LOG_LEVEL", "MAX_ROWS", "PG_POOL_MAX"):
        row = next(line for line in text.splitlines() if line.startswith(f"| `{env}` |"))
        assert row.count("|") == 4 and row.split("|")[3].strip(), row


def test_serve_help_says_where_it_listens() -> None:
    out = subprocess.run(
        [entry_point("resolver"), "serve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "PORT" in out and "HOST" in out and "docs/settings.md" in out, out
