"""Writes one `sql_generation_log` row per SQL generation (LLM or compiled).

Logging is best effort: a write that fails or takes longer than `timeout_s` is dropped
with a WARNING and never raises into the request that produced it.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from adapters.deadline import within

logger = logging.getLogger(__name__)

LOG_COLUMNS: tuple[str, ...] = (
    "widget_id",
    "metric_id",
    "question",
    "model_id",
    "prompt_hash",
    "generated_sql",
    "safety_allowed",
    "safety_rule",
    "latency_ms",
    "input_tokens",
    "output_tokens",
    "failure_kind",
    "generator",
    "approved_key",
    "tenant",
    "cache_read_tokens",
    "way",
    "grounded_intent",
    "grounding",
)

_INSERT_SQL = (
    "INSERT INTO sql_generation_log ("
    + ", ".join(LOG_COLUMNS)
    + ") VALUES ("
    + ", ".join(f"%({c})s" for c in LOG_COLUMNS)
    + ")"
)


def _as_text(value: Any) -> str | None:
    """Enum-like values (e.g. a FailureKind) are stored as their value."""
    if value is None:
        return None
    return str(getattr(value, "value", value))


def log_row(record: dict[str, Any]) -> dict[str, Any]:
    """The insert parameters for a record: known keys only, missing ones NULL."""
    row = {c: record.get(c) for c in LOG_COLUMNS}
    intent = record.get("intent")
    row["grounded_intent"] = Jsonb(intent) if intent is not None else None
    row["tenant"] = row["tenant"] or "default"
    for key in ("failure_kind", "generator", "safety_rule", "way"):
        row[key] = _as_text(row[key])
    return row


class PgGenerationLog:
    """domain.ports.GenerationLog over the shared pool."""

    def __init__(self, pool: AsyncConnectionPool, *, timeout_s: float = 1.0) -> None:
        self._pool = pool
        self._timeout_s = timeout_s

    def _timed_out(self) -> TimeoutError:
        return TimeoutError(f"no answer from PostgreSQL within {self._timeout_s:g}s")

    async def write(self, record: dict[str, Any]) -> None:
        row = log_row(record)

        async def insert() -> None:
            async with self._pool.connection(timeout=self._timeout_s) as conn:
                await conn.execute(_INSERT_SQL, row)  # type: ignore[arg-type]

        try:
            await within(self._timeout_s, insert(), on_timeout=self._timed_out)
        except (psycopg.Error, TimeoutError) as exc:  # psycopg.Error includes PoolTimeout
            logger.warning(
                "sql_generation_log write dropped (metric %s): %s: %s",
                row.get("metric_id"),
                type(exc).__name__,
                exc,
            )

    async def last_approved(self, *, approved_key: str) -> str | None:
        """The newest model SQL logged under this approved-SQL key (same question, intent,
        metric, schema, model and safety policy) that passed the safety layer, or None (also
        when PostgreSQL is unreachable: the caller then degrades)."""

        async def lookup() -> Any:
            async with self._pool.connection(timeout=self._timeout_s) as conn:
                cur = await conn.execute(
                    "SELECT generated_sql FROM sql_generation_log "
                    "WHERE approved_key = %s AND safety_allowed AND generated_sql IS NOT NULL "
                    # a compiled answer's SQL has fixed time bounds: only model SQL is reused
                    "AND way IS DISTINCT FROM 'compiled_from_metric' "
                    "ORDER BY id DESC LIMIT 1",
                    (approved_key,),
                )
                return await cur.fetchone()

        try:
            row = await within(self._timeout_s, lookup(), on_timeout=self._timed_out)
        except (psycopg.Error, TimeoutError) as exc:
            logger.warning("sql_generation_log lookup failed: %s: %s", type(exc).__name__, exc)
            return None
        return None if row is None else str(row[0])
