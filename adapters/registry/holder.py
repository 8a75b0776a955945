"""`RegistryHolder`: what the graph sees (the Registry port), and the registry's one write
path. It delegates to the current snapshot, swapped atomically on every local write
(validate, measure against the tenant's limits, store, apply that one widget) and whenever
any instance changes a widget or a catalog entry (the listener, see
adapters/registry/listener.py: a widget's NOTIFY re-reads that widget only; a catalog
change or a reconnect reloads in full). While PostgreSQL is down the last snapshot stays
in service.

Read-your-writes: a reload installs its result only if nothing else was installed while it
was reading (a local write, or another reload); otherwise what it read may predate that
change, so it reads once more, holding the write lock: nothing installs while that second
read runs (local writes hold the lock from before their commit to their install), so it is
the latest and is installed. A write is thus never undone by a reload that began before it
committed, the next request on this instance always sees it, and a reload settles after at
most two reads however busy the writers are (retrying until a read went unchallenged could
starve for as long as writes kept coming). One counter (the install generation) and one
lock guard this; the store keeps no state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import psycopg

from adapters.registry.audit import AuditEntry
from adapters.registry.limits import PreparedWidget, WidgetLimits
from adapters.registry.listener import RegistryListener
from adapters.registry.routing import widget_problems
from adapters.registry.snapshot import RegistrySnapshot, WidgetChange, WidgetKey
from adapters.registry.store import RegistryStore
from domain.failures import InvalidIntent
from domain.identity import DEFAULT_TENANT
from domain.models import MetricDef, RoutingEntry, WidgetSpec

# What a read hands back to be applied to the snapshot in service at install time.
Patch = Callable[[RegistrySnapshot], RegistrySnapshot]

logger = logging.getLogger("adapters.registry")


class RegistryHolder:
    """The live Registry: the current snapshot, swapped on writes and on NOTIFY.

    Build it with `await RegistryHolder.create(store)`. Write through `put_widget` /
    `delete_widget` (the one write path). `limits` bounds each tenant's widgets.
    `listen_conninfo` defaults to the store's conninfo; the listener's settings are those
    of `RegistryListener`.

    Every install of a snapshot bumps a generation counter. A reload (listener or
    `refresh()`) notes the generation when it starts; if another install happened while
    it was reading (or a second read holds the write lock), what it read may be older than
    what is in service, so it is dropped and read once more under the write lock, which
    local writes hold from before their commit to their install (a read started after a
    commit sees that commit). Local writes are thus serialised on an instance; they are
    rare admin operations.
    """

    def __init__(
        self,
        store: RegistryStore,
        snapshot: RegistrySnapshot,
        *,
        listen_conninfo: str | None = None,
        connect_timeout_s: float = 2.0,
        backoff_min_s: float = 0.25,
        backoff_max_s: float = 2.0,
        ping_interval_s: float = 5.0,
        ping_timeout_s: float = 2.0,
        keepalives_idle_s: int = 5,
        limits: WidgetLimits | None = None,
    ) -> None:
        self.store = store
        self.limits = limits or WidgetLimits()
        self._snapshot = snapshot
        conninfo = listen_conninfo if listen_conninfo is not None else store.conninfo
        if conninfo is None:
            raise TypeError("listen_conninfo is required when the store has no string conninfo")
        self._listener = RegistryListener(
            conninfo,
            self._reload,
            connect_timeout_s=connect_timeout_s,
            backoff_min_s=backoff_min_s,
            backoff_max_s=backoff_max_s,
            ping_interval_s=ping_interval_s,
            ping_timeout_s=ping_timeout_s,
            keepalives_idle_s=keepalives_idle_s,
        )
        self._subscribers: list[Callable[[RegistrySnapshot], Awaitable[None]]] = []
        self._generation = 0  # bumped on every snapshot install
        # Held by each local write from before its commit to its install (so writes install
        # in commit order) and by a reload's second read (so nothing installs meanwhile).
        self._write_lock = asyncio.Lock()
        self.reloads = 0  # changes applied by the listener, in full or one widget at a time
        self.full_reloads = 0  # of which full reloads (a reconnect, a catalog change)
        self.stale_loads = 0  # first reads dropped (something newer may be in), read again

    @classmethod
    async def create(cls, store: RegistryStore, **kwargs: Any) -> RegistryHolder:
        """Load the first snapshot and hold it (not yet listening: call `start()`).
        Raises PostgresFailure if PostgreSQL is down."""
        return cls(store, await store.load(), **kwargs)

    # ------------------------------------------------------------ Registry protocol

    @property
    def snapshot(self) -> RegistrySnapshot:
        return self._snapshot

    @property
    def current(self) -> RegistrySnapshot:
        """The snapshot in service right now (same as `snapshot`)."""
        return self._snapshot

    def _install(self, snapshot: RegistrySnapshot) -> RegistrySnapshot:
        """Install `snapshot` (a local write's result, or a read that is known fresh)."""
        self._snapshot = snapshot  # a single reference swap: readers see old or new, whole
        self._generation += 1
        return snapshot

    async def _install_latest(self, read: Callable[[], Awaitable[Patch]]) -> RegistrySnapshot:
        """Run `read` and install its patch applied to the snapshot in service, if nothing
        else was installed while it ran and no second read is running; else run `read`
        once more under the write lock (nothing installs meanwhile) and install that.

        No await between the check and the install, so nothing slips in between. Raises
        what `read` raises (the snapshot in service stays).
        """
        generation = self._generation
        patch = await read()
        if self._generation == generation and not self._write_lock.locked():
            return self._install(patch(self._snapshot))
        self.stale_loads += 1
        logger.debug("registry: a newer snapshot may have been installed during a reload")
        async with self._write_lock:
            patch = await read()
            return self._install(patch(self._snapshot))

    def _full(
        self, load: Callable[[], Awaitable[RegistrySnapshot]]
    ) -> Callable[[], Awaitable[Patch]]:
        async def read() -> Patch:
            snapshot = await load()
            return lambda _current: snapshot

        return read

    def _widgets_by_id(
        self, widget_ids: Collection[str], conn: psycopg.AsyncConnection[Any]
    ) -> Callable[[], Awaitable[Patch]]:
        """Re-read the widgets with these ids (every tenant's): set those stored, drop
        those gone."""

        async def read() -> Patch:
            stored = await self.store.read_widgets(widget_ids, conn)

            def patch(current: RegistrySnapshot) -> RegistrySnapshot:
                changes: list[WidgetChange] = list(stored.items())
                changes += [
                    (key, None)
                    for wid in widget_ids
                    for key in current.keys_with_id(wid)
                    if key not in stored
                ]
                return current.with_changes(changes)

            return patch

        return read

    def widget(self, widget_id: str, tenant: str = DEFAULT_TENANT) -> WidgetSpec | None:
        return self._snapshot.widget(widget_id, tenant)

    def metric(self, metric_id: str) -> MetricDef | None:
        return self._snapshot.metric(metric_id)

    def routing(self, metric_id: str) -> RoutingEntry | None:
        return self._snapshot.routing(metric_id)

    @property
    def version(self) -> str:
        return self._snapshot.version

    def widgets(self, tenant: str = DEFAULT_TENANT) -> dict[str, WidgetSpec]:
        return self._snapshot.widgets(tenant)

    def all_widgets(self) -> dict[WidgetKey, WidgetSpec]:
        return self._snapshot.all_widgets()

    def metrics(self) -> dict[str, MetricDef]:
        return self._snapshot.metrics()

    def routings(self) -> dict[str, RoutingEntry]:
        return self._snapshot.routings()

    # ------------------------------------------------------------ writes

    async def refresh(self) -> RegistrySnapshot:
        """Reload from PostgreSQL now (raises PostgresFailure; the old snapshot stays)."""
        snapshot = await self._install_latest(self._full(self.store.load))
        await self._notify(snapshot)
        return snapshot

    def widget_problems(self, spec: WidgetSpec, widget_id: str | None = None) -> list[str]:
        """Why `spec` cannot be registered (empty when it can): the same check as boot
        validation and the seed's (adapters/registry/routing.py `widget_problems`)."""
        snap = self._snapshot
        return widget_problems(spec, widget_id, snap.metrics(), snap.routings())

    async def put_widget(
        self,
        widget_id: str,
        spec: WidgetSpec,
        *,
        tenant: str = DEFAULT_TENANT,
        who: AuditEntry | None = None,
    ) -> bool:
        """The one write path: validate (InvalidIntent naming every problem), measure
        against the tenant's limits (WidgetLimitExceeded), store in PostgreSQL with its
        audit row (PostgresFailure), apply this one widget locally. True if created."""
        problems = self.widget_problems(spec, widget_id)
        if problems:
            raise InvalidIntent("; ".join(problems), problems=problems)
        prepared = await asyncio.to_thread(PreparedWidget.of, spec)  # size-bound CPU work
        too_large = prepared.size_problem(self.limits)
        if too_large is not None:
            raise too_large
        async with self._write_lock:
            created = await self.store.write_widget(
                tenant, widget_id, prepared, who=who, limits=self.limits
            )
            self._install(self._snapshot.with_widget(widget_id, spec, tenant, prepared.digest))
        return created

    async def delete_widget(
        self, widget_id: str, *, tenant: str = DEFAULT_TENANT, who: AuditEntry | None = None
    ) -> bool:
        """Delete through the one write path (audited). True when it existed."""
        async with self._write_lock:
            existed = await self.store.delete_widget(tenant, widget_id, who=who)
            self._install(self._snapshot.without_widget(widget_id, tenant))
        return existed

    # ------------------------------------------------------------ listener

    @property
    def listening(self) -> bool:
        """True while the listener holds a live LISTEN connection."""
        return self._listener.listening

    @property
    def listener(self) -> RegistryListener:
        return self._listener

    async def wait_listening(self, timeout: float) -> None:
        await self._listener.wait_listening(timeout)

    async def start(self) -> None:
        self._listener.start()

    async def stop(self) -> None:
        await self._listener.stop()

    def subscribe(self, on_reload: Callable[[RegistrySnapshot], Awaitable[None]]) -> None:
        """Call `on_reload(snapshot)` after every reload from PostgreSQL (listener or
        `refresh()`), e.g. to refresh what is derived from the catalog. It must not raise."""
        self._subscribers.append(on_reload)

    async def _notify(self, snapshot: RegistrySnapshot) -> None:
        for on_reload in self._subscribers:
            await on_reload(snapshot)

    async def _reload(
        self, conn: psycopg.AsyncConnection[Any], widget_ids: Collection[str] | None = None
    ) -> None:
        """The listener's change: these widgets only, or (None) everything."""
        self.reloads += 1
        if widget_ids is not None:
            snapshot = await self._install_latest(self._widgets_by_id(widget_ids, conn))
            logger.debug(
                "registry: %d widget(s) re-read (version %s)", len(widget_ids), snapshot.version
            )
            return
        snapshot = await self._install_latest(self._full(lambda: self.store.load_with(conn)))
        self.full_reloads += 1
        logger.info("registry reloaded (version %s)", snapshot.version)
        await self._notify(snapshot)
