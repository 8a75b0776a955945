"""`RegistryHolder`: what the graph sees (the Registry port). It delegates to the current
snapshot, swapped atomically on every local write (the one write path: validate, store,
apply) and whenever any instance changes a widget or a catalog entry (the listener, see
adapters/registry/listener.py). While PostgreSQL is down the last snapshot stays in service.

Read-your-writes: a reload installs its snapshot only if nothing else was installed while
it was loading (a local write, or another reload); otherwise its view may predate that
change, so it loads again. A write is thus never undone by a reload that began before it
committed, and the next request on this instance always sees it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from adapters.registry.audit import AuditEntry
from adapters.registry.listener import RegistryListener
from adapters.registry.snapshot import RegistrySnapshot, WidgetKey
from adapters.registry.store import RegistryStore
from domain.failures import InvalidIntent
from domain.identity import DEFAULT_TENANT
from domain.models import MetricDef, RoutingEntry, WidgetSpec, validate_intent, widget_id_problem

logger = logging.getLogger("adapters.registry")


class RegistryHolder:
    """The live Registry: the current snapshot, swapped on writes and on NOTIFY.

    Build it with `store.load_holder()` (or `RegistryHolder.create(store)`), which attaches
    it to the store so the store's writes show here at once. `listen_conninfo` defaults to
    the store's conninfo; the listener's settings are those of `RegistryListener`.

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
        backoff_max_s: float = 2.0,
        ping_interval_s: float = 5.0,
        ping_timeout_s: float = 2.0,
        keepalives_idle_s: int = 5,
    ) -> None:
        self.store = store
        self._snapshot = snapshot
        store.attach(self)
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
        snapshot = await self._load_latest(self.store.load)
        await self._notify(snapshot)
        return snapshot

    def widget_problems(self, spec: WidgetSpec, widget_id: str | None = None) -> list[str]:
        """Why `spec` cannot be registered (empty when it can): a reserved or malformed id,
        its intent against the catalog, a question on a metric the warehouse does not serve."""
        intent = spec.data_intent
        id_problem = widget_id_problem(widget_id) if widget_id is not None else None
        problems = [id_problem] if id_problem else []
        problems += validate_intent(intent, self._snapshot.metrics())
        routing = self._snapshot.routing(intent.metric_id)
        if intent.question and routing is not None and routing.backend != "databricks":
            problems.append(
                f"a question needs a warehouse metric: {intent.metric_id!r} is served "
                f"by {routing.backend}"
            )
        return problems

    async def put_widget(
        self,
        widget_id: str,
        spec: WidgetSpec,
        *,
        tenant: str = DEFAULT_TENANT,
        who: AuditEntry | None = None,
    ) -> bool:
        """The one write path: validate (InvalidIntent naming every problem), store in
        PostgreSQL with its audit row (PostgresFailure), apply locally. True if created."""
        problems = self.widget_problems(spec, widget_id)
        if problems:
            raise InvalidIntent("; ".join(problems), problems=problems)
        return await self.store.put_widget(widget_id, spec, tenant=tenant, who=who)

    async def delete_widget(
        self, widget_id: str, *, tenant: str = DEFAULT_TENANT, who: AuditEntry | None = None
    ) -> bool:
        return await self.store.delete_widget(widget_id, tenant=tenant, who=who)

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

    async def _reload(self, conn: psycopg.AsyncConnection[Any]) -> None:
        snapshot = await self._load_latest(lambda: self.store.load_with(conn))
        self.reloads += 1
        logger.info("registry reloaded (version %s)", snapshot.version)
        await self._notify(snapshot)
