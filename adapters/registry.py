"""The widget / catalog / routing registry: an immutable in-process snapshot, kept fresh.

- `RegistrySnapshot`: widgets + catalog (from PostgreSQL) + routing (from YAML), immutable,
  with a content `version` (equal on every instance holding the same content).
- `RegistryStore`: reads a snapshot from PostgreSQL and writes widgets.
- `RegistryHolder`: what the graph sees (the Registry protocol). It delegates to the current
  snapshot, swapped atomically on every local write and whenever any instance changes a
  widget or a catalog entry (LISTEN on `resolver_registry`, fed by the tables' triggers).
  The listener has its own connection, reconnects with backoff, and reloads in full after
  reconnecting (notifications sent while it was away are lost). While PostgreSQL is down
  the last snapshot stays in service.

Read-your-writes: a reload installs its snapshot only if nothing else was installed while
it was loading (a local write, or another reload); otherwise its view may predate that
change, so it loads again. A write is thus never undone by a reload that began before it
committed, and the next request on this instance always sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import psycopg
import yaml
from psycopg.types.json import Json
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError

from domain.failures import FailureKind, InvalidIntent, PostgresFailure
from domain.models import BACKENDS, MetricDef, RoutingEntry, WidgetSpec, validate_intent

logger = logging.getLogger(__name__)

CHANNEL = "resolver_registry"


# ------------------------------------------------------------------------------ snapshot


def _content_version(
    widgets: Mapping[str, WidgetSpec],
    metrics: Mapping[str, MetricDef],
    routing: Mapping[str, RoutingEntry],
) -> str:
    doc = {
        "widgets": {k: widgets[k].model_dump(mode="json") for k in sorted(widgets)},
        "metrics": {k: metrics[k].model_dump(mode="json") for k in sorted(metrics)},
        "routing": {k: routing[k].model_dump(mode="json") for k in sorted(routing)},
    }
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class RegistrySnapshot:
    """An immutable view of widgets, catalog and routing. Implements domain.ports.Registry.

    `load_errors` names stored rows that failed validation (they are left out); boot
    validation reports them.
    """

    _widgets: Mapping[str, WidgetSpec]
    _metrics: Mapping[str, MetricDef]
    _routing: Mapping[str, RoutingEntry]
    load_errors: tuple[str, ...] = ()
    _version: str = field(default="")

    @classmethod
    def build(
        cls,
        widgets: Mapping[str, WidgetSpec],
        metrics: Mapping[str, MetricDef],
        routing: Mapping[str, RoutingEntry],
        load_errors: tuple[str, ...] = (),
    ) -> RegistrySnapshot:
        w, m, r = dict(widgets), dict(metrics), dict(routing)
        return cls(
            MappingProxyType(w),
            MappingProxyType(m),
            MappingProxyType(r),
            tuple(load_errors),
            _content_version(w, m, r),
        )

    def widget(self, widget_id: str) -> WidgetSpec | None:
        return self._widgets.get(widget_id)

    def metric(self, metric_id: str) -> MetricDef | None:
        return self._metrics.get(metric_id)

    def routing(self, metric_id: str) -> RoutingEntry | None:
        return self._routing.get(metric_id)

    @property
    def version(self) -> str:
        return self._version

    def widgets(self) -> dict[str, WidgetSpec]:
        return dict(self._widgets)

    def metrics(self) -> dict[str, MetricDef]:
        return dict(self._metrics)

    def routings(self) -> dict[str, RoutingEntry]:
        return dict(self._routing)

    def with_widget(self, widget_id: str, spec: WidgetSpec) -> RegistrySnapshot:
        return self.build(
            {**self._widgets, widget_id: spec}, self._metrics, self._routing, self.load_errors
        )

    def without_widget(self, widget_id: str) -> RegistrySnapshot:
        widgets = {k: v for k, v in self._widgets.items() if k != widget_id}
        return self.build(widgets, self._metrics, self._routing, self.load_errors)


# ------------------------------------------------------------------------------ routing + boot checks


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


def load_routing(path: Path) -> dict[str, RoutingEntry]:
    """config/metric_routing.yaml -> {metric: RoutingEntry}. ValueError names the bad entry."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: routing file not found") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise ValueError(f"{path}: expected a top-level 'metrics' mapping of metric -> routing")
    out: dict[str, RoutingEntry] = {}
    for name, raw in data["metrics"].items():
        try:
            out[str(name)] = RoutingEntry.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err.get("loc", ()))
            raise ValueError(
                f"{path}: routing for metric {name!r}: {where}: {err['msg']}"
            ) from None
    return out


def validate_boot(snapshot: RegistrySnapshot) -> list[str]:
    """Everything that must be fixed before serving; each problem names its entry."""
    metrics = snapshot.metrics()
    routing = snapshot.routings()
    problems = list(snapshot.load_errors)
    problems += [
        f"metric {name!r} has no entry in metric_routing.yaml"
        for name in sorted(metrics)
        if name not in routing
    ]
    problems += [
        f"routing for metric {name!r}: unknown backend {entry.backend!r} (expected one of {list(BACKENDS)})"
        for name, entry in sorted(routing.items())
        if entry.backend not in BACKENDS
    ]
    problems += [
        f"routing for metric {name!r}: metric is not in the catalog"
        for name in sorted(routing)
        if name not in metrics
    ]
    for wid, spec in sorted(snapshot.widgets().items()):
        problems += [f"widget {wid!r}: {err}" for err in validate_intent(spec.data_intent, metrics)]
    return problems


# ------------------------------------------------------------------------------ store


_WIDGETS_SQL = "SELECT id, spec FROM widgets ORDER BY id"
_METRICS_SQL = f"SELECT {CATALOG_COLUMNS} FROM metrics_catalog ORDER BY name"


def _unavailable(exc: psycopg.Error) -> PostgresFailure:
    kind = (
        FailureKind.postgres_unavailable
        if isinstance(exc, psycopg.OperationalError)
        else FailureKind.postgres_error
    )
    return PostgresFailure(f"registry store: {type(exc).__name__}: {exc}".strip(), kind=kind)


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
    ) -> None:
        self.pool = pool
        self.routing_path = routing_path
        self.timeout_s = timeout_s
        pool_conninfo = pool.conninfo if isinstance(pool.conninfo, str) else None
        self.conninfo = conninfo if conninfo is not None else pool_conninfo
        self._holders: list[RegistryHolder] = []
        self._writes = 0  # local writes committed so far

    async def load_holder(self, **holder_kwargs: Any) -> RegistryHolder:
        """Load a snapshot and wrap it in a holder attached to this store (not yet listening:
        call `start()`). Raises PostgresFailure when PostgreSQL is down."""
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
        routing = await asyncio.to_thread(load_routing, self.routing_path)
        try:
            async with (pool or self.pool).connection(timeout=self.timeout_s) as conn:
                return await self._read(conn, routing)
        except psycopg.Error as exc:
            raise _unavailable(exc) from exc

    async def load_with(self, conn: psycopg.AsyncConnection[Any]) -> RegistrySnapshot:
        """A fresh snapshot read over a given connection (the listener's own)."""
        routing = await asyncio.to_thread(load_routing, self.routing_path)
        try:
            return await self._read(conn, routing)
        except psycopg.Error as exc:
            raise _unavailable(exc) from exc

    async def _read(
        self, conn: psycopg.AsyncConnection[Any], routing: dict[str, RoutingEntry]
    ) -> RegistrySnapshot:
        errors: list[str] = []
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
        widgets: dict[str, WidgetSpec] = {}
        for wid, spec in widget_rows:
            try:
                widgets[wid] = WidgetSpec.model_validate(spec)
            except ValidationError as exc:
                errors.append(f"stored widget {wid!r} is invalid: {exc.errors()[0]['msg']}")
        for err in errors:
            logger.warning("registry: %s (left out)", err)
        return RegistrySnapshot.build(widgets, metrics, routing, tuple(errors))

    async def put_widget(self, widget_id: str, spec: WidgetSpec) -> bool:
        """Insert or replace a widget. True when it was created."""
        try:
            async with self.pool.connection(timeout=self.timeout_s) as conn:
                cur = await conn.execute(
                    "INSERT INTO widgets (id, spec) VALUES (%s, %s)"
                    " ON CONFLICT (id) DO UPDATE SET spec = EXCLUDED.spec, updated_at = now()"
                    " RETURNING (xmax = 0) AS created",
                    (widget_id, Json(spec.model_dump(mode="json"))),
                )
                row = await cur.fetchone()
        except psycopg.Error as exc:
            raise _unavailable(exc) from exc
        self._writes += 1
        for holder in self._holders:
            holder._apply(holder.snapshot.with_widget(widget_id, spec))
        return bool(row and row[0])

    async def delete_widget(self, widget_id: str) -> bool:
        """Delete a widget. True when it existed."""
        try:
            async with self.pool.connection(timeout=self.timeout_s) as conn:
                cur = await conn.execute("DELETE FROM widgets WHERE id = %s", (widget_id,))
        except psycopg.Error as exc:
            raise _unavailable(exc) from exc
        self._writes += 1
        for holder in self._holders:
            holder._apply(holder.snapshot.without_widget(widget_id))
        return cur.rowcount > 0


# ------------------------------------------------------------------------------ holder


class RegistryHolder:
    """The live Registry: the current snapshot, swapped on writes and on NOTIFY.

    Build it with `store.load_holder()` (or `RegistryHolder.create(store)`), which attaches
    it to the store so the store's writes show here at once. `listen_conninfo` defaults to
    the store's conninfo. The listener reconnects with
    exponential backoff (`backoff_min_s` .. `backoff_max_s`) and reloads in full after
    each (re)connect; every `ping_interval_s` without notifications it checks its
    connection so a silently dead link is noticed.

    Every install of a snapshot bumps a generation counter. A reload (listener or
    `refresh()`) notes the generation when it starts; if another install happened while
    it was loading, its snapshot may be older than what is in service, so it is dropped
    and the load repeated (a load started after a commit sees that commit). Writes are
    rare admin operations, so the repeat loop settles at once in practice.
    """

    def __init__(
        self,
        store: RegistryStore,
        snapshot: RegistrySnapshot,
        *,
        listen_conninfo: str | None = None,
        connect_timeout_s: float = 2.0,
        backoff_min_s: float = 0.25,
        backoff_max_s: float = 10.0,
        ping_interval_s: float = 15.0,
    ) -> None:
        self.store = store
        self._snapshot = snapshot
        store.attach(self)
        conninfo = listen_conninfo if listen_conninfo is not None else store.conninfo
        if conninfo is None:
            raise TypeError("listen_conninfo is required when the store has no string conninfo")
        self._conninfo = conninfo
        self._connect_timeout_s = connect_timeout_s
        self._backoff_min_s = backoff_min_s
        self._backoff_max_s = backoff_max_s
        self._ping_interval_s = ping_interval_s
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._generation = 0  # bumped on every snapshot install
        self.reloads = 0  # full reloads done by the listener (observability / tests)
        self.stale_loads = 0  # loads dropped because something newer was installed meanwhile

    @classmethod
    async def create(cls, store: RegistryStore, **kwargs: Any) -> RegistryHolder:
        """Load the first snapshot (raises PostgresFailure if PostgreSQL is down)."""
        return await store.load_holder(**kwargs)

    # ------------------------------------------------------------ Registry protocol

    @property
    def snapshot(self) -> RegistrySnapshot:
        return self._snapshot

    @property
    def current(self) -> RegistrySnapshot:
        """The snapshot in service right now (same as `snapshot`)."""
        return self._snapshot

    def _apply(self, snapshot: RegistrySnapshot) -> None:
        """Install `snapshot` (a local write's result, or a reload that is known fresh)."""
        self._snapshot = snapshot  # a single reference swap: readers see old or new, whole
        self._generation += 1

    async def _load_latest(
        self, load: Callable[[], Awaitable[RegistrySnapshot]]
    ) -> RegistrySnapshot:
        """Run `load` until nothing else was installed while it ran, then install its result.

        No await between the generation check and the install, so nothing slips in between.
        Raises what `load` raises (the snapshot in service stays).
        """
        while True:
            generation = self._generation
            snapshot = await load()
            if self._generation == generation:
                self._apply(snapshot)
                return snapshot
            self.stale_loads += 1
            logger.debug("registry: a newer snapshot was installed during a reload; reloading")

    def widget(self, widget_id: str) -> WidgetSpec | None:
        return self._snapshot.widget(widget_id)

    def metric(self, metric_id: str) -> MetricDef | None:
        return self._snapshot.metric(metric_id)

    def routing(self, metric_id: str) -> RoutingEntry | None:
        return self._snapshot.routing(metric_id)

    @property
    def version(self) -> str:
        return self._snapshot.version

    def widgets(self) -> dict[str, WidgetSpec]:
        return self._snapshot.widgets()

    def metrics(self) -> dict[str, MetricDef]:
        return self._snapshot.metrics()

    def routings(self) -> dict[str, RoutingEntry]:
        return self._snapshot.routings()

    # ------------------------------------------------------------ writes

    async def refresh(self) -> RegistrySnapshot:
        """Reload from PostgreSQL now (raises PostgresFailure; the old snapshot stays)."""
        return await self._load_latest(self.store.load)

    async def put_widget(self, widget_id: str, spec: WidgetSpec) -> bool:
        """Validate against the catalog (InvalidIntent), store, apply locally. True if created."""
        errors = validate_intent(spec.data_intent, self._snapshot.metrics())
        if errors:
            raise InvalidIntent("; ".join(errors))
        return await self.store.put_widget(widget_id, spec)

    async def delete_widget(self, widget_id: str) -> bool:
        return await self.store.delete_widget(widget_id)

    # ------------------------------------------------------------ listener

    @property
    def listening(self) -> bool:
        """True while the listener holds a live LISTEN connection."""
        return self._listening.is_set()

    async def wait_listening(self, timeout: float) -> None:
        await asyncio.wait_for(self._listening.wait(), timeout)

    async def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._listen_forever(), name="registry-listener")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._listening.clear()

    async def _listen_forever(self) -> None:
        delay = self._backoff_min_s
        while True:
            try:
                await self._listen_once()
            # PostgreSQL gone or failing; ValueError: the routing YAML became invalid.
            except (psycopg.Error, PostgresFailure, OSError, ValueError) as exc:
                logger.warning("registry listener: %s; retrying in %.2fs", exc, delay)
            if self._listening.is_set():  # it had worked: start the backoff afresh
                delay = self._backoff_min_s
            self._listening.clear()
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self._backoff_max_s)

    async def _listen_once(self) -> None:
        async with await psycopg.AsyncConnection.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=max(1, round(self._connect_timeout_s)),
        ) as conn:
            await conn.execute("LISTEN resolver_registry")  # == CHANNEL
            # Anything may have changed while we were not listening: reload in full.
            await self._reload(conn)
            self._listening.set()
            while True:
                got = False
                async for _ in conn.notifies(timeout=self._ping_interval_s, stop_after=1):
                    got = True
                if got:
                    # Coalesce a burst (e.g. a seed touching many rows) into one reload.
                    async for _ in conn.notifies(timeout=0.05):
                        pass
                    await self._reload(conn)
                else:
                    await conn.execute("SELECT 1")

    async def _reload(self, conn: psycopg.AsyncConnection[Any]) -> None:
        snapshot = await self._load_latest(lambda: self.store.load_with(conn))
        self.reloads += 1
        logger.info("registry reloaded (version %s)", snapshot.version)
