"""Refresh when the data changes: probe each source's data version, and when it moves,
refresh the answers over it and tell the open dashboards.

`ChangeWatcher` (one per process):
- every `interval_s`, for each versioned source the registry's metrics read (warehouse
  tables of compiled metrics, `postgres:<metric>` for PostgreSQL metrics), takes the
  source's probe slot on the board (Redis `SET NX PX` across the fleet: one probe per
  source per interval) and, if it got it, probes and reports the version; then it reads
  every source's latest version from the board into the process's `DataVersionGate`
  (domain/data_versions.py). Other instances' moved versions also arrive at once (Redis
  pub/sub), and PostgreSQL's NOTIFY (migration 0040) reports a metric's change directly;
- it indexes the keys this process answered by source (from the graph's freshness hint);
- when a version moves: `on_table_changed` callbacks run (rollups rebuild their partitions
  in the update window), and every key over that source this process answered is refreshed
  in the background (under the key's lease: once across the fleet; an instance whose
  refresh finds the lease held waits for the leader's outcome), then `ChangeHub` tells the
  dashboards open on this process which widgets changed (GET /v1/changes).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from domain.data_versions import DataVersionGate, TableChange, postgres_source, sources_of
from domain.freshness import Freshness
from domain.lease import Leases
from domain.ports import DataVersions

log = logging.getLogger("resolver.changes")

RunFn = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
OnTableChanged = Callable[[TableChange], Awaitable[None] | None]


class Board(Protocol):
    """Where a fleet shares probe slots and versions (adapters/data_versions.py)."""

    async def claim(self, source: str, interval_s: float) -> bool: ...
    async def report(self, source: str, version: int, checked_at: float) -> None: ...
    async def read(self, sources: Iterable[str]) -> dict[str, Any]: ...
    async def listen(self, on_version: Callable[[str, int, float], None]) -> None: ...


@dataclass(frozen=True, slots=True)
class WidgetChanged:
    """What an open dashboard is told: this widget has a newer answer."""

    tenant: str
    widget_id: str
    source: str


class ChangeHub:
    """The open change streams of this process, by tenant."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[WidgetChanged]]] = {}

    @contextlib.contextmanager
    def subscribe(self, tenant: str) -> Any:
        queue: asyncio.Queue[WidgetChanged] = asyncio.Queue(maxsize=1000)
        self._subscribers.setdefault(tenant, set()).add(queue)
        try:
            yield queue
        finally:
            self._subscribers.get(tenant, set()).discard(queue)

    def publish(self, event: WidgetChanged) -> None:
        for queue in self._subscribers.get(event.tenant, ()):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(event)

    @property
    def subscribers(self) -> int:
        return sum(len(s) for s in self._subscribers.values())


@dataclass
class _Answered:
    inputs: dict[str, Any]
    tenant: str
    widget_id: str
    at: float
    stamped: bool = True  # its entry carries data versions (else: refreshed if older)
    ttl_s: float = 0.0  # its TTL (from the hint)


def _no_sources(_inputs: dict[str, Any]) -> tuple[str, ...]:
    return ()


@dataclass
class ChangeWatcher:
    gate: DataVersionGate
    versions: DataVersions
    board: Board
    sources: Callable[[], Iterable[str]]
    run: RunFn  # one background graph run (the resolver's)
    leases: Leases | None = None
    interval_s: float = 5.0
    concurrency: int = 8
    max_keys: int = 5000
    forget_s: float = 900.0  # a key nobody read this long is not refreshed on a change
    lease_wait_s: float = 60.0
    clock: Callable[[], float] = time.time
    hub: ChangeHub = field(default_factory=ChangeHub)
    # callbacks run first on a change (rollups rebuild their update window), then the
    # answers over the source are refreshed
    on_table_changed: list[OnTableChanged] = field(default_factory=list)
    sources_for: Callable[[dict[str, Any]], Iterable[str]] = _no_sources
    probes: int = 0  # probes this process ran (for tests and the bench)
    refreshes: int = 0  # refreshes started by a change

    def __post_init__(self) -> None:
        self._index: dict[str, OrderedDict[str, _Answered]] = {}
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._running: set[str] = set()
        self._slots = asyncio.Semaphore(max(1, self.concurrency))
        self.changes: list[TableChange] = []

    # ---------------------------------------------------------------- answers seen

    def observe(self, inputs: dict[str, Any], out: dict[str, Any]) -> None:
        """A resolution answered: index its key by the sources its answer was read at (or,
        for an answer without a stamp, e.g. a rollup's, the sources its metric reads)."""
        hint: Freshness | None = out.get("freshness")
        if hint is None:
            return
        versions = hint.versions
        sources = list(versions) if versions else list(self.sources_for(inputs))
        if not sources:
            return
        key = hint.key
        access = inputs.get("access")
        tenant = getattr(access, "tenant", "default")
        answered = _Answered(
            inputs | {"refresh": False},
            tenant,
            str(inputs.get("widget_id")),
            self.clock(),
            stamped=bool(versions),
            ttl_s=hint.ttl_s,
        )
        for source in sources:
            keys = self._index.setdefault(source, OrderedDict())
            keys[key] = answered
            keys.move_to_end(key)
            while len(keys) > self.max_keys:
                keys.popitem(last=False)

    def keys_over(self, source: str) -> list[str]:
        return list(self._index.get(source, ()))

    # ---------------------------------------------------------------- versions

    async def start(self) -> None:
        await self.board.listen(self._learned)
        await self.probe_once()
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="data-version-probes")

    async def _loop(self) -> None:
        next_at = time.monotonic()
        while True:  # at a fixed rate: a slow probe does not stretch the interval
            next_at = max(next_at + self.interval_s, time.monotonic())
            await asyncio.sleep(next_at - time.monotonic())
            try:
                await self.probe_once()
            except Exception:  # a bug must not stop the probes
                log.exception("data version probes failed")

    async def probe_once(self) -> None:
        """One interval: probe the sources whose slot this process gets, then learn every
        source's latest version from the board."""
        sources = sorted(set(self.sources()))

        async def probe(source: str) -> None:
            if await self.board.claim(source, self.interval_s):
                self.probes += 1
                version = await self.versions.probe(source)
                if version is not None:
                    await self.board.report(source, version, self.clock())

        await asyncio.gather(*(probe(s) for s in sources))
        for source, reported in (await self.board.read(sources)).items():
            self.learn(source, reported.version, reported.checked_at)

    def _learned(self, source: str, version: int, checked_at: float) -> None:
        self.learn(source, version, checked_at)

    def learn(self, source: str, version: int, checked_at: float | None = None) -> None:
        change = self.gate.learn(source, version, checked_at=checked_at)
        if change is not None:
            self._changed(change)

    async def metric_changed(self, metric: str, version: int) -> None:
        """PostgreSQL's NOTIFY (migration 0040): a metric's history changed."""
        self.learn(postgres_source(metric), version)

    # ---------------------------------------------------------------- changes

    def _changed(self, change: TableChange) -> None:
        log.info("data changed: %s version %s -> %s", change.source, change.old, change.new)
        self.changes.append(change)
        del self.changes[:-100]
        self._spawn(self._after(change))

    async def _after(self, change: TableChange) -> None:
        """Stamped answers (read from the warehouse) are refreshed at once; the others (a
        rollup's) once the callbacks (the rollups' rebuilds) are done."""
        self._refresh_over(change.source, change.seen_at, stamped=True)
        await asyncio.gather(*(self._call(c, change) for c in self.on_table_changed))
        self._refresh_over(change.source, change.seen_at, stamped=False)

    def _refresh_over(self, source: str, seen_at: float, *, stamped: bool) -> None:
        keys = self._index.get(source, OrderedDict())
        now = self.clock()
        for key, answered in list(keys.items()):
            if now - answered.at > self.forget_s:
                del keys[key]  # nobody read it lately: the next reader gets it live
            elif answered.stamped == stamped and key not in self._running:
                self._spawn(self._refresh(key, answered, source, seen_at))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _call(self, callback: OnTableChanged, change: TableChange) -> None:
        try:
            done = callback(change)
            if inspect.isawaitable(done):
                await done
        except Exception:
            log.exception("on_table_changed callback failed for %s", change.source)

    async def _refresh(self, key: str, answered: _Answered, source: str, seen_at: float) -> None:
        self._running.add(key)
        try:
            async with self._slots:
                self.refreshes += 1
                # a stamped entry is refreshed only if its versions moved; one without
                # (a rollup's answer) if it was resolved before the change was seen (its
                # expiry within `ahead_s`), so another instance's refresh is not repeated
                ahead = 0.0 if answered.stamped else seen_at + answered.ttl_s - self.clock()
                out = await self.run(answered.inputs | {"background": True, "ahead_s": ahead})
            how = next(
                (t["outcome"] for t in out.get("trace", []) if t["node"] == "cache_lookup"), ""
            )
            if how == "skip_busy" and self.leases is not None:
                await self.leases.wait(key, self.lease_wait_s)  # another instance refreshes it
            elif how == "skip_backoff" or (out.get("response") or {}).get("live_data_unavailable"):
                return
            self.hub.publish(WidgetChanged(answered.tenant, answered.widget_id, source))
        except Exception:
            log.exception("refresh of %s after a change to %s failed", key, source)
        finally:
            self._running.discard(key)

    async def idle(self) -> None:
        """Wait until every refresh and callback started so far has finished (tests)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def aclose(self) -> None:
        tasks = [*self._pending]
        if self._task is not None:
            tasks.append(self._task)
            self._task = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def rebuild_rollups(rollups: Any) -> OnTableChanged:
    """The on_table_changed callback of adapters/rollups.py: each rollup over the changed
    table rebuilds its update window's partitions from the new version (one warehouse
    statement per partition, once across the fleet; skipped where already built from it),
    the rollups over the table concurrently."""
    from metricsql.rollups import update_window

    async def rebuild(change: TableChange) -> None:
        now = datetime.fromtimestamp(change.seen_at, UTC)

        async def one(rollup: Any) -> None:
            report = await rollups.build_partitions(
                rollup.name, update_window(rollup, now), data_version=str(change.new)
            )
            log.info(
                "rollup %s after %s moved to %s: %s", rollup.name, change.source, change.new, report
            )

        # the rollups over the table at once (each its own statements): the answers over
        # them wait for the slowest, not for the sum
        await asyncio.gather(
            *(
                one(r)
                for r in rollups.rollups.values()
                if r.definition.table.lower() == change.source
            )
        )

    return rebuild


def open_gate(settings: Any) -> DataVersionGate | None:
    """The process's data-version gate (Context.data_versions), when CHANGE_REFRESH is on."""
    if not settings.change_refresh:
        return None
    return DataVersionGate(valid_s=settings.effective_data_version_valid_s)


def versioned_sources(registry: Any) -> list[str]:
    """The sources answers can be stamped with: the tables of compiled warehouse metrics and
    PostgreSQL metrics (an LLM-routed metric's answers live by their TTL)."""
    out = []
    for name, metric in registry.metrics().items():
        routing = registry.routing(name)
        if routing is None:
            continue
        if routing.backend == "postgres":
            out.append(postgres_source(name))
        elif routing.generator != "llm" and metric.definition.table.count(".") == 2:
            out.append(metric.definition.table.lower())
    return out


@contextlib.asynccontextmanager
async def change_refresh(resources: Any, resolver: Any) -> Any:
    """The process's ChangeWatcher (None when CHANGE_REFRESH is off), started and stopped
    around the service: its board (Redis when REDIS_URL is set), PostgreSQL's NOTIFY
    listener, and the resolver's answers indexed."""
    from adapters.data_versions import (
        LocalVersionBoard,
        PgChangeListener,
        RedisVersionBoard,
        WarehouseDataVersions,
    )

    settings, ctx = resources.settings, resources.context
    gate = ctx.data_versions
    if gate is None:
        yield None
        return
    board: LocalVersionBoard | RedisVersionBoard = (
        RedisVersionBoard(settings.redis_url, prefix=settings.cache_prefix)
        if settings.redis_url
        else LocalVersionBoard()
    )
    watcher = ChangeWatcher(
        gate=gate,
        versions=WarehouseDataVersions(ctx.warehouse, resources.gateway.pool),
        board=board,
        sources=lambda: versioned_sources(resources.registry),
        run=resolver.background,
        leases=ctx.leases,
        interval_s=settings.data_version_interval_s,
        concurrency=settings.change_refresh_concurrency,
        lease_wait_s=ctx.lease_wait_s,
        clock=ctx.clock,
    )
    registry = resources.registry

    def sources_for(inputs: dict[str, Any]) -> tuple[str, ...]:
        spec = inputs.get("spec")
        if spec is None or spec.data_intent.question:
            return ()
        metric = registry.metric(spec.data_intent.metric_id)
        routing = registry.routing(metric.name) if metric is not None else None
        if metric is None or routing is None:
            return ()
        return sources_of(metric.definition.table, metric.name, routing.backend, routing.generator)

    watcher.sources_for = sources_for
    if ctx.rollups is not None:
        watcher.on_table_changed.append(rebuild_rollups(ctx.rollups))
    listener = PgChangeListener(resources.database_url, watcher.metric_changed)
    resolver.watchers.append(watcher.observe)
    listener.start()
    try:
        await watcher.start()
        yield watcher
    finally:
        await listener.stop()
        await watcher.aclose()
        await board.aclose()
