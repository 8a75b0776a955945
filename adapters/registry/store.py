"""`RegistryStore`: reads registry snapshots from PostgreSQL (+ the routing YAML) and writes
widgets. A write is applied at once to every RegistryHolder attached to the store, so an
instance sees its own writes immediately; other instances learn of them by NOTIFY on
`CHANNEL` (fed by the tables' triggers, see adapters/migrations)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg.types.json import Json
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError

from adapters.deadline import within
from adapters.pg_errors import postgres_failure
from adapters.registry.audit import AuditEntry, append_audit, spec_hash, stored_hash
from adapters.registry.audit import audit_entries as read_audit
from adapters.registry.snapshot import RegistrySnapshot, WidgetKey
from domain.config import read_routing
from domain.failures import FailureKind, PostgresFailure
from domain.identity import DEFAULT_TENANT
from domain.models import MetricDef, RoutingEntry, WidgetSpec

if TYPE_CHECKING:
    from adapters.registry.holder import RegistryHolder

logger = logging.getLogger("adapters.registry")

T = TypeVar("T")
CHANNEL = "resolver_registry"  # the NOTIFY channel of the widgets/metrics_catalog triggers

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


_WIDGETS_SQL = "SELECT tenant, id, spec FROM widgets ORDER BY tenant, id"
_METRICS_SQL = f"SELECT {CATALOG_COLUMNS} FROM metrics_catalog ORDER BY name"


def _unavailable(exc: psycopg.Error) -> PostgresFailure:
    return postgres_failure(exc, what="registry store")


class RegistryStore:
    """Reads snapshots from PostgreSQL (+ routing YAML) and writes widgets.

    A write is applied at once to every RegistryHolder attached to this store (see
    `load_holder`), so this instance sees its own writes immediately; other instances
    learn of them by NOTIFY. `conninfo` is what holders LISTEN with (default: the pool's).
    Raises PostgresFailure (postgres_unavailable / postgres_error) when PostgreSQL fails.
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
        self._holders: list[RegistryHolder] = []
        self._writes = 0  # local writes committed so far

    async def load_holder(self, **holder_kwargs: Any) -> RegistryHolder:
        """Load a snapshot and wrap it in a holder attached to this store (not yet listening:
        call `start()`). Raises PostgresFailure when PostgreSQL is down."""
        from adapters.registry.holder import RegistryHolder  # the holder module imports this one

        while True:  # a write committed during the load may be missing from it: load again
            writes = self._writes
            snapshot = await self.load()
            if self._writes == writes:
                return RegistryHolder(self, snapshot, **holder_kwargs)

    def attach(self, holder: RegistryHolder) -> None:
        if holder not in self._holders:
            self._holders.append(holder)

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
        routing, routing_errors = routing_file  # invalid entries are left out, and named
        errors: list[str] = list(routing_errors)
        async with conn.transaction():  # one consistent view of both tables
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            widget_rows = await (await conn.execute(_WIDGETS_SQL)).fetchall()
            metric_rows = await (await conn.execute(_METRICS_SQL)).fetchall()
        metrics: dict[str, MetricDef] = {}
        for row in metric_rows:
            try:
                metrics[row[0]] = metric_from_row(row)
            except ValidationError as exc:
                errors.append(f"catalog metric {row[0]!r} is invalid: {exc.errors()[0]['msg']}")
        widgets: dict[WidgetKey, WidgetSpec] = {}
        for tenant, wid, spec in widget_rows:
            try:
                widgets[(tenant, wid)] = WidgetSpec.model_validate(spec)
            except ValidationError as exc:
                errors.append(f"stored widget {wid!r} is invalid: {exc.errors()[0]['msg']}")
        for err in errors:
            logger.warning("registry: %s (left out)", err)
        return RegistrySnapshot.build(widgets, metrics, routing, tuple(errors))

    async def put_widget(
        self,
        widget_id: str,
        spec: WidgetSpec,
        *,
        tenant: str = DEFAULT_TENANT,
        who: AuditEntry | None = None,
    ) -> bool:
        """Insert or replace a tenant's widget, and its audit row in the same transaction
        (unvalidated: write through `RegistryHolder.put_widget`, the one write path).
        True when it was created. Bounded by the client deadline."""

        async def write() -> bool:
            async with (
                self.pool.connection(timeout=self.timeout_s) as conn,
                conn.transaction(),
            ):
                before = await (
                    await conn.execute(
                        "SELECT spec FROM widgets WHERE tenant = %s AND id = %s FOR UPDATE",
                        (tenant, widget_id),
                    )
                ).fetchone()
                cur = await conn.execute(
                    "INSERT INTO widgets (tenant, id, spec) VALUES (%s, %s, %s)"
                    " ON CONFLICT (tenant, id) DO UPDATE SET spec = EXCLUDED.spec,"
                    " updated_at = now() RETURNING (xmax = 0) AS created",
                    (tenant, widget_id, Json(spec.model_dump(mode="json"))),
                )
                row = await cur.fetchone()
                created = bool(row and row[0])
                if who is not None:
                    await append_audit(
                        conn,
                        who,
                        "widget.create" if created else "widget.replace",
                        widget_id,
                        stored_hash(before[0] if before else None),
                        spec_hash(spec),
                    )
                return created

        created = await self._bounded(write(), "write")
        self._writes += 1
        for holder in self._holders:
            holder._apply(holder.snapshot.with_widget(widget_id, spec, tenant))
        return created

    async def delete_widget(
        self, widget_id: str, *, tenant: str = DEFAULT_TENANT, who: AuditEntry | None = None
    ) -> bool:
        """Delete a tenant's widget (audited in the same transaction). True when it existed."""

        async def delete() -> bool:
            async with (
                self.pool.connection(timeout=self.timeout_s) as conn,
                conn.transaction(),
            ):
                cur = await conn.execute(
                    "DELETE FROM widgets WHERE tenant = %s AND id = %s RETURNING spec",
                    (tenant, widget_id),
                )
                gone = await cur.fetchone()
                if gone is not None and who is not None:
                    await append_audit(
                        conn, who, "widget.delete", widget_id, stored_hash(gone[0]), None
                    )
                return gone is not None

        existed = await self._bounded(delete(), "write")
        self._writes += 1
        for holder in self._holders:
            holder._apply(holder.snapshot.without_widget(widget_id, tenant))
        return existed

    async def audit_entries(
        self, tenant: str, *, limit: int = 100, before_id: int | None = None
    ) -> list[dict[str, Any]]:
        """A tenant's audit log, newest first (PostgresFailure when PostgreSQL fails)."""

        async def read() -> list[dict[str, Any]]:
            async with self.pool.connection(timeout=self.timeout_s) as conn:
                return await read_audit(conn, tenant, limit=limit, before_id=before_id)

        return await self._bounded(read(), "audit read")
