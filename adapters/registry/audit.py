"""The audit log of widget writes: one `audit_log` row per PUT/DELETE, written by the store
in the write's own transaction (time, tenant, subject, action, widget id, SHA-256 of the
canonical spec JSON before and after)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from pydantic import ValidationError

from adapters.registry.snapshot import canonical_json, spec_digest
from domain.models import WidgetSpec

AuditAction = Literal[
    "widget.create",
    "widget.replace",
    "widget.delete",
    # a widget's question's verified answer (adapters/pg_verified_answers.py)
    "answer.verify",
    "answer.unverify",
]


@dataclass(frozen=True)
class AuditEntry:
    """Who writes a widget."""

    tenant: str
    subject: str


def spec_hash(spec: WidgetSpec | None) -> str | None:
    return None if spec is None else spec_digest(spec)


def stored_hash(raw: Any) -> str | None:
    """The hash of a stored spec as the service would write it (None if there is none);
    `raw` is the parsed JSON, or its text."""
    if isinstance(raw, str):
        raw = json.loads(raw)
    if raw is None:
        return None
    try:
        return spec_hash(WidgetSpec.model_validate(raw))
    except ValidationError:
        return hashlib.sha256(canonical_json(raw)).hexdigest()


async def append_audit(
    conn: psycopg.AsyncConnection[Any],
    who: AuditEntry,
    action: AuditAction,
    widget_id: str,
    before: str | None,
    after: str | None,
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (tenant, subject, action, widget_id, before_hash, after_hash)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (who.tenant, who.subject, action, widget_id, before, after),
    )


async def audit_entries(
    conn: psycopg.AsyncConnection[Any], tenant: str, *, limit: int, before_id: int | None
) -> list[dict[str, Any]]:
    """A tenant's audit log, newest first."""
    cur = await conn.execute(
        "SELECT id, at, tenant, subject, action, widget_id, before_hash, after_hash"
        " FROM audit_log WHERE tenant = %s AND (%s::bigint IS NULL OR id < %s)"
        " ORDER BY id DESC LIMIT %s",
        (tenant, before_id, before_id, limit),
    )
    names = [d.name for d in cur.description or []]
    return [dict(zip(names, r, strict=True)) for r in await cur.fetchall()]
