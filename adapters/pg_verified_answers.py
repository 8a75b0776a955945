"""`PgVerifiedAnswers`: the `verified_answers` table (migration 0070), the VerifiedAnswers port.

Writes are audited like widget writes, with the registry's machinery: a transaction-scoped
advisory lock per (tenant, question) (`lock_answer`) taken before the row is read, then the
`audit_log` row (`answer.verify` / `answer.unverify`, the widget it was verified through,
SHA-256 of the answer before and after) in the write's own transaction. Reads and flags are
best effort: a store that is down (or slow past `timeout_s`) serves no verified answer and
the question takes its usual way.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from adapters.deadline import within
from adapters.pg_errors import postgres_failure
from adapters.registry.audit import AuditEntry, append_audit
from adapters.registry.snapshot import canonical_json
from adapters.registry.store import lock_answer
from domain.failures import FailureKind, PostgresFailure
from domain.ports import VerifiedAnswer

logger = logging.getLogger(__name__)
T = TypeVar("T")

_COLUMNS = (
    "tenant, question, widget_id, intent, sql, verified_by, verified_at,"
    " needs_reverification, reverification_reason"
)


def answer_hash(intent: dict[str, Any] | None, sql: str | None, question: str) -> str:
    """The audit log's hash of a verified answer: SHA-256 of its canonical JSON."""
    raw = {"question": question, "intent": intent, "sql": sql}
    return hashlib.sha256(canonical_json(raw)).hexdigest()


def _answer(row: tuple[Any, ...]) -> VerifiedAnswer:
    tenant, question, widget_id, intent, sql, by, at, flagged, reason = row
    when = at.timestamp() if isinstance(at, datetime) else float(at)
    return VerifiedAnswer(tenant, question, widget_id, intent, sql, by, when, flagged, reason)


class PgVerifiedAnswers:
    """domain.ports.VerifiedAnswers over the shared pool."""

    def __init__(self, pool: AsyncConnectionPool, *, timeout_s: float = 1.0) -> None:
        self._pool = pool
        self._timeout_s = timeout_s

    async def _bounded(self, call: Awaitable[T], what: str) -> T:
        async def mapped() -> T:
            try:
                return await call
            except psycopg.Error as exc:
                raise postgres_failure(exc, what="verified answers") from exc

        return await within(
            self._timeout_s,
            mapped(),
            on_timeout=lambda: PostgresFailure(
                f"verified answers: no answer from PostgreSQL within {self._timeout_s:g}s ({what})",
                kind=FailureKind.postgres_timeout,
            ),
        )

    async def read(self, tenant: str, question: str) -> VerifiedAnswer | None:
        """The tenant's verified answer to `question` (PostgresFailure when PostgreSQL fails)."""

        async def read() -> VerifiedAnswer | None:
            async with self._pool.connection(timeout=self._timeout_s) as conn:
                cur = await conn.execute(
                    f"SELECT {_COLUMNS} FROM verified_answers WHERE tenant = %s AND question = %s",
                    (tenant, question),
                )
                row = await cur.fetchone()
            return None if row is None else _answer(row)

        return await self._bounded(read(), "read")

    async def unflagged(self) -> list[VerifiedAnswer]:
        """Every tenant's verified answers not flagged yet (to check against a new catalog);
        [] when PostgreSQL fails (logged)."""

        async def read() -> list[VerifiedAnswer]:
            async with self._pool.connection(timeout=self._timeout_s) as conn:
                cur = await conn.execute(
                    f"SELECT {_COLUMNS} FROM verified_answers WHERE NOT needs_reverification"
                )
                return [_answer(r) for r in await cur.fetchall()]

        try:
            return await self._bounded(read(), "read")
        except PostgresFailure as exc:
            logger.warning("verified answers not checked against the catalog: %s", exc)
            return []

    async def get(self, tenant: str, question: str) -> VerifiedAnswer | None:
        try:
            return await self.read(tenant, question)
        except PostgresFailure as exc:
            logger.warning("verified answer lookup failed (the usual way answers): %s", exc)
            return None

    async def flag(self, tenant: str, question: str, reason: str) -> None:
        async def update() -> int:
            async with self._pool.connection(timeout=self._timeout_s) as conn:
                cur = await conn.execute(
                    "UPDATE verified_answers SET needs_reverification = true,"
                    " reverification_reason = %s"
                    " WHERE tenant = %s AND question = %s AND NOT needs_reverification",
                    (reason, tenant, question),
                )
                return cur.rowcount

        try:
            flagged = await self._bounded(update(), "flag")
        except PostgresFailure as exc:
            logger.warning("verified answer flag dropped: %s", exc)
            return
        if flagged:
            logger.warning("verified answer of tenant %r needs re-verification: %s", tenant, reason)

    async def put(self, answer: VerifiedAnswer) -> bool:
        """Verify (or verify again: the flag clears) an answer, audited. True: created."""
        a = answer

        async def write() -> bool:
            async with self._pool.connection(timeout=self._timeout_s) as conn, conn.transaction():
                await lock_answer(conn, a.tenant, a.question)
                cur = await conn.execute(
                    "SELECT intent, sql FROM verified_answers WHERE tenant = %s AND question = %s",
                    (a.tenant, a.question),
                )
                before = await cur.fetchone()
                await conn.execute(
                    f"INSERT INTO verified_answers ({_COLUMNS}) VALUES"
                    " (%s, %s, %s, %s, %s, %s, to_timestamp(%s), false, NULL)"
                    " ON CONFLICT (tenant, question) DO UPDATE SET widget_id = EXCLUDED.widget_id,"
                    " intent = EXCLUDED.intent, sql = EXCLUDED.sql,"
                    " verified_by = EXCLUDED.verified_by, verified_at = EXCLUDED.verified_at,"
                    " needs_reverification = false, reverification_reason = NULL",
                    (
                        a.tenant,
                        a.question,
                        a.widget_id,
                        Jsonb(a.intent) if a.intent is not None else None,
                        a.sql,
                        a.verified_by,
                        a.verified_at,
                    ),
                )
                await append_audit(
                    conn,
                    AuditEntry(a.tenant, a.verified_by),
                    "answer.verify",
                    a.widget_id,
                    answer_hash(before[0], before[1], a.question) if before else None,
                    answer_hash(a.intent, a.sql, a.question),
                )
                return before is None

        return await self._bounded(write(), "write")

    async def delete(self, tenant: str, question: str, *, widget_id: str, subject: str) -> bool:
        """Withdraw a verified answer, audited. True when there was one."""

        async def delete() -> bool:
            async with self._pool.connection(timeout=self._timeout_s) as conn, conn.transaction():
                await lock_answer(conn, tenant, question)
                cur = await conn.execute(
                    "DELETE FROM verified_answers WHERE tenant = %s AND question = %s"
                    " RETURNING intent, sql",
                    (tenant, question),
                )
                gone = await cur.fetchone()
                if gone is not None:
                    await append_audit(
                        conn,
                        AuditEntry(tenant, subject),
                        "answer.unverify",
                        widget_id,
                        answer_hash(gone[0], gone[1], question),
                        None,
                    )
                return gone is not None

        return await self._bounded(delete(), "write")
