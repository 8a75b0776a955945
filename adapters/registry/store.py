"""`RegistryStore`: the registry's repository, with no state of its own. It reads
snapshots (or single widgets) from PostgreSQL plus the routing YAML, and writes one widget
with its audit row. What is in service on an instance is the holder's business
(adapters/registry/holder.py); other instances learn of a write by NOTIFY on `CHANNEL`
(fed by the tables' triggers, see adapters/migrations).

Writes to one (tenant, id) are serialised by a transaction-scoped advisory lock taken
before the row is read, so each audit row's `before_hash` is the previous row's
`after_hash`, also when two requests create the same widget at once. Creates of one tenant
are serialised likewise while its widgets are counted against its limit.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Collection
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError

from adapters.deadline import within
from adapters.pg_errors import postgres_failure
from adapters.registry.audit import AuditEntry, append_audit, stored_hash
from adapters.registry.audit import audit_entries as read_audit
from adapters.registry.limits import PreparedWidget, WidgetLimits, count_problem
from adapters.registry.snapshot import Digested, RegistrySnapshot, WidgetKey, spec_digest
from domain.config import read_routing
from domain.failures import FailureKind, PostgresFailure
from domain.models import MetricDef, RoutingEntry, WidgetSpec

logger = logging.getLogger("adapters.registry")

T = TypeVar("T")
CHANNEL = "resolver_registry"  # the NOTIFY channel of the widgets/metrics_catalog triggers
# Advisory lock classes (two-key form: its space never meets the one-key locks elsewhere).
_WIDGET_LOCK = 0x57444757  # one (tenant, id): "WDGW"
_TENANT_LOCK = 0x57444754  # one tenant's creates: "WDGT"
_ANSWER_LOCK = 0x57444741  # one (tenant, question)'s verified answer: "WDGA"

CATALOG_COLUMNS = "name, description, unit, owner, definition, governance_status, last_validated_at"


def metric_from_row(row: tuple[Any, ...]) -> MetricDef:
    """A `metrics_catalog` row (CATALOG_COLUMNS order) as a MetricDef; ValidationError if bad."""
    name, description, unit, owner, definition, status, validated = row
    return MetricDef(
        name=name,
        description=description,
        unit=unit,
        owner=owner,
        definition=definition,
        governance_status=status,
        last_validated_at=validated,
    )


# spec as text: parsed, validated and hashed off the event loop
_WIDGETS_SQL = "SELECT tenant, id, spec::text FROM widgets ORDER BY tenant, id"
_WIDGETS_BY_ID_SQL = "SELECT tenant, id, spec::text FROM widgets WHERE id = ANY(%s)"
_METRICS_SQL = f"SELECT {CATALOG_COLUMNS} FROM metrics_catalog ORDER BY name"


def _unavailable(exc: psycopg.Error) -> PostgresFailure:
    return postgres_failure(exc, what="registry store")


def parse_widget_rows(
    rows: Collection[tuple[str, str, str]],
) -> tuple[dict[WidgetKey, Digested], list[str]]:
    """Stored widget rows (tenant, id, spec JSON text) validated and hashed, plus a problem
    naming each invalid row (left out). CPU-bound: call it off the event loop."""
    widgets: dict[WidgetKey, Digested] = {}
    errors: list[str] = []
    for tenant, wid, text in rows:
        try:
            spec = WidgetSpec.model_validate(json.loads(text))
        except (ValidationError, ValueError) as exc:
            msg = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            errors.append(f"stored widget {wid!r} is invalid: {msg}")
            continue
        widgets[(tenant, wid)] = (spec, spec_digest(spec))
    return widgets, errors


def _build(
    widget_rows: list[tuple[str, str, str]],
    metric_rows: list[tuple[Any, ...]],
    routing_file: tuple[dict[str, RoutingEntry], list[str]],
) -> RegistrySnapshot:
    routing, routing_errors = routing_file  # invalid entries are left out, and named
    errors: list[str] = list(routing_errors)
    metrics: dict[str, MetricDef] = {}
    for row in metric_rows:
        try:
            metrics[row[0]] = metric_from_row(row)
        except ValidationError as exc:
            errors.append(f"catalog metric {row[0]!r} is invalid: {exc.errors()[0]['msg']}")
    widgets, widget_errors = parse_widget_rows(widget_rows)
    errors += widget_errors
    for err in errors:
        logger.warning("registry: %s (left out)", err)
    return RegistrySnapshot.build(
        {k: spec for k, (spec, _) in widgets.items()},
        metrics,
        routing,
        tuple(errors),
        digests={k: digest for k, (_, digest) in widgets.items()},
    )


class RegistryStore:
    """The registry's repository: snapshots and widgets read, one widget written. Stateless
    (its pool, routing path and deadlines only): any number of holders may share one.
    `conninfo` is what holders LISTEN with (default: the pool's). Raises PostgresFailure
    (postgres_unavailable / postgres_error / postgres_timeout) when PostgreSQL fails.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool,
        routing_path: Path,
        *,
        conninfo: str | None = None,
        timeout_s: float = 3.0,
        deadline_s: float = 4.0,
    ) -> None:
        """`timeout_s` bounds waiting for a pooled connection; `deadline_s` each read or
        write end to end on the client (a slow or silent link cannot stall it)."""
        self.pool = pool
        self.routing_path = routing_path
        self.timeout_s = timeout_s
        self.deadline_s = deadline_s
        pool_conninfo = pool.conninfo if isinstance(pool.conninfo, str) else None
        self.conninfo = conninfo if conninfo is not None else pool_conninfo

    async def load(self, pool: AsyncConnectionPool | None = None) -> RegistrySnapshot:
        """A fresh snapshot; `pool` defaults to the store's own."""
        routing = await asyncio.to_thread(read_routing, self.routing_path)

        async def read() -> RegistrySnapshot:
            async with (pool or self.pool).connection(timeout=self.timeout_s) as conn:
                return await self._read(conn, routing)

        return await self._bounded(read(), "read")

    async def load_with(self, conn: psycopg.AsyncConnection[Any]) -> RegistrySnapshot:
        """A fresh snapshot read over a given connection (the listener's own)."""
        routing = await asyncio.to_thread(read_routing, self.routing_path)
        return await self._bounded(self._read(conn, routing), "read")

    async def read_widgets(
        self, widget_ids: Collection[str], conn: psycopg.AsyncConnection[Any] | None = None
    ) -> dict[WidgetKey, Digested]:
        """Every tenant's stored widget with one of `widget_ids` (a NOTIFY names ids), over
        `conn` or a pooled connection. An invalid row is left out (logged)."""

        async def read(c: psycopg.AsyncConnection[Any]) -> list[tuple[str, str, str]]:
            return await (await c.execute(_WIDGETS_BY_ID_SQL, (list(widget_ids),))).fetchall()

        async def pooled() -> list[tuple[str, str, str]]:
            async with self.pool.connection(timeout=self.timeout_s) as c:
                return await read(c)

        rows = await self._bounded(read(conn) if conn is not None else pooled(), "read")
        widgets, errors = await asyncio.to_thread(parse_widget_rows, rows)
        for err in errors:
            logger.warning("registry: %s (left out)", err)
        return widgets

    async def _bounded(self, call: Awaitable[T], what: str) -> T:
        """`call` within the client deadline; psycopg errors mapped to PostgresFailure."""

        async def mapped() -> T:
            try:
                return await call
            except psycopg.Error as exc:
                raise _unavailable(exc) from exc

        return await within(
            self.deadline_s,
            mapped(),
            on_timeout=lambda: PostgresFailure(
                f"registry store: no answer from PostgreSQL within {self.deadline_s:g}s ({what})",
                kind=FailureKind.postgres_timeout,
            ),
        )

    async def _read(
        self,
        conn: psycopg.AsyncConnection[Any],
        routing_file: tuple[dict[str, RoutingEntry], list[str]],
    ) -> RegistrySnapshot:
        async with conn.transaction():  # one consistent view of both tables
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            widget_rows = await (await conn.execute(_WIDGETS_SQL)).fetchall()
            metric_rows = await (await conn.execute(_METRICS_SQL)).fetchall()
        # validating and hashing every widget is CPU work: off the event loop
        return await asyncio.to_thread(_build, widget_rows, metric_rows, routing_file)

    async def write_widget(
        self,
        tenant: str,
        widget_id: str,
        widget: PreparedWidget,
        *,
        who: AuditEntry | None = None,
        limits: WidgetLimits | None = None,
    ) -> bool:
        """Insert or replace a tenant's widget, and its audit row in the same transaction
        (unvalidated: write through `RegistryHolder.put_widget`, the one write path).
        A create over `limits.max_per_tenant` raises WidgetLimitExceeded. True when it was
        created. Bounded by the client deadline."""

        async def write() -> bool:
            async with (
                self.pool.connection(timeout=self.timeout_s) as conn,
                conn.transaction(),
            ):
                await lock_widget(conn, tenant, widget_id)
                before = await (
                    await conn.execute(
                        "SELECT spec::text FROM widgets WHERE tenant = %s AND id = %s",
                        (tenant, widget_id),
                    )
                ).fetchone()
                if before is None and limits is not None:
                    await conn.execute(
                        "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_TENANT_LOCK, tenant)
                    )
                    count = await (
                        await conn.execute(
                            "SELECT count(*) FROM widgets WHERE tenant = %s", (tenant,)
                        )
                    ).fetchone()
                    problem = count_problem(tenant, count[0] if count else 0, limits)
                    if problem is not None:
                        raise problem
                await conn.execute(
                    "INSERT INTO widgets (tenant, id, spec) VALUES (%s, %s, %s::json)"
                    " ON CONFLICT (tenant, id) DO UPDATE SET spec = EXCLUDED.spec,"
                    " updated_at = now()",
                    (tenant, widget_id, widget.text),
                )
                created = before is None
                if who is not None:
                    before_hash = (
                        await asyncio.to_thread(stored_hash, before[0]) if before else None
                    )
                    await append_audit(
                        conn,
                        who,
                        "widget.create" if created else "widget.replace",
                        widget_id,
                        before_hash,
                        widget.digest,
                    )
                return created

        return await self._bounded(write(), "write")

    async def delete_widget(
        self, tenant: str, widget_id: str, *, who: AuditEntry | None = None
    ) -> bool:
        """Delete a tenant's widget (audited in the same transaction). True when it existed."""

        async def delete() -> bool:
            async with (
                self.pool.connection(timeout=self.timeout_s) as conn,
                conn.transaction(),
            ):
                await lock_widget(conn, tenant, widget_id)
                cur = await conn.execute(
                    "DELETE FROM widgets WHERE tenant = %s AND id = %s RETURNING spec::text",
                    (tenant, widget_id),
                )
                gone = await cur.fetchone()
                if gone is not None and who is not None:
                    before_hash = await asyncio.to_thread(stored_hash, gone[0])
                    await append_audit(conn, who, "widget.delete", widget_id, before_hash, None)
                return gone is not None

        return await self._bounded(delete(), "write")

    async def audit_entries(
        self, tenant: str, *, limit: int = 100, before_id: int | None = None
    ) -> list[dict[str, Any]]:
        """A tenant's audit log, newest first (PostgresFailure when PostgreSQL fails)."""

        async def read() -> list[dict[str, Any]]:
            async with self.pool.connection(timeout=self.timeout_s) as conn:
                return await read_audit(conn, tenant, limit=limit, before_id=before_id)

        return await self._bounded(read(), "audit read")


async def lock_widget(conn: psycopg.AsyncConnection[Any], tenant: str, widget_id: str) -> None:
    """Serialise writes to one (tenant, id) until the transaction ends (creates included:
    a row lock cannot guard a row that does not exist yet)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_WIDGET_LOCK, f"{tenant}/{widget_id}")
    )


async def lock_answer(conn: psycopg.AsyncConnection[Any], tenant: str, question: str) -> None:
    """Serialise writes to one (tenant, question)'s verified answer, as `lock_widget` does
    a widget's (so its audit rows chain: each `before_hash` the previous `after_hash`)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_ANSWER_LOCK, f"{tenant}/{question}")
    )
