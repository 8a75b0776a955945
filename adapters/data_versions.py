"""Data versions (domain.ports.DataVersions) and where a fleet shares them.

Probes, one source at a time, never raising (None: no version now, the TTL decides):
- a warehouse table: Delta's `DESCRIBE HISTORY <table> LIMIT 1`, its `version` column
  (Databricks, and the Statement Execution fake, which answers it); the embedded DuckDB
  lakehouse keeps its own counter per table (`DuckDBWarehouse.data_version`), no statement;
- a PostgreSQL metric (`postgres:<metric>`): its row in kpi_metric_versions, bumped by the
  trigger of migration 0040 (0 when never changed since).

Boards: one probe per source per interval across the fleet, and every instance learns the
result. `RedisVersionBoard` (REDIS_URL): a probe slot is `SET NX PX` (the instance that gets
it probes), the latest version and when it was checked are a Redis value per source, and a
moved version is also PUBLISHed so every instance learns it at once. `LocalVersionBoard`:
the same in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool
from redis.exceptions import RedisError

from domain.data_versions import POSTGRES_PREFIX
from domain.failures import ResolverFailure
from domain.ports import Warehouse

log = logging.getLogger("adapters.data_versions")

PG_CHANNEL = "kpi_metrics_changed"


def _quoted(table: str) -> str:
    return ".".join("`" + part.replace("`", "``") + "`" for part in table.split("."))


class WarehouseDataVersions:
    """Versions of warehouse tables (and of PostgreSQL metrics, with `pool`)."""

    def __init__(
        self, warehouse: Warehouse | None, pool: AsyncConnectionPool | None = None
    ) -> None:
        self._warehouse = warehouse
        self._pool = pool

    async def probe(self, source: str) -> int | None:
        try:
            if source.startswith(POSTGRES_PREFIX):
                return await self._postgres(source.removeprefix(POSTGRES_PREFIX))
            return await self._table(source)
        except (ResolverFailure, psycopg.Error, OSError, ValueError, KeyError, TypeError) as exc:
            log.info("data version of %s: probe failed: %s", source, exc)
            return None

    async def _table(self, table: str) -> int | None:
        wh = self._warehouse
        if wh is None:
            return None
        own = getattr(wh, "data_version", None)
        if own is not None:  # the embedded lakehouse counts its own appends
            version: int | None = own(table)
            return version
        result = await wh.execute(f"DESCRIBE HISTORY {_quoted(table)} LIMIT 1", max_rows=1)
        if not result.rows:
            return None
        return int(result.rows[0]["version"])

    async def _postgres(self, metric: str) -> int | None:
        if self._pool is None:
            return None
        async with self._pool.connection(timeout=2.0) as conn:
            cur = await conn.execute(
                "SELECT version FROM kpi_metric_versions WHERE metric_name = %s", (metric,)
            )
            row = await cur.fetchone()
        return int(row[0]) if row else 0


@dataclass(frozen=True, slots=True)
class Reported:
    version: int
    checked_at: float


OnVersion = Callable[[str, int, float], None]


class LocalVersionBoard:
    """One process: every probe slot is ours; versions kept in memory."""

    def __init__(self) -> None:
        self._latest: dict[str, Reported] = {}
        self._listener: OnVersion | None = None

    def describe(self) -> str:
        return "local"

    async def claim(self, source: str, interval_s: float) -> bool:
        return True

    async def report(self, source: str, version: int, checked_at: float) -> None:
        self._latest[source] = Reported(version, checked_at)

    async def read(self, sources: Iterable[str]) -> dict[str, Reported]:
        return {s: r for s in sources if (r := self._latest.get(s)) is not None}

    async def listen(self, on_version: OnVersion) -> None:
        self._listener = on_version

    async def aclose(self) -> None:
        return None


class RedisVersionBoard:
    """Probe slots, latest versions and change messages on Redis, under `prefix`. A Redis
    that is down never raises: no slot (nobody probes: versions age out, TTLs decide)."""

    def __init__(self, url: str, *, prefix: str, keep_s: float = 3600.0) -> None:
        self._redis = aioredis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._prefix = prefix
        self._keep_ms = int(keep_s * 1000)
        self._channel = f"{prefix}dv:changed"
        self._task: asyncio.Task[None] | None = None

    def describe(self) -> str:
        return "redis"

    def _key(self, kind: str, source: str) -> str:
        return f"{self._prefix}dv:{kind}:{source}"

    async def claim(self, source: str, interval_s: float) -> bool:
        """The probe slot of `source` for this interval (a little shorter, so the next
        interval's tick finds it free)."""
        ms = max(1, int(interval_s * 900))
        try:
            return bool(await self._redis.set(self._key("slot", source), b"1", nx=True, px=ms))
        except (RedisError, OSError) as exc:
            log.info("data versions: no probe slot for %s (%s)", source, exc)
            return False

    async def report(self, source: str, version: int, checked_at: float) -> None:
        blob = orjson.dumps({"source": source, "version": version, "checked_at": checked_at})
        try:
            old = await self._redis.set(self._key("v", source), blob, px=self._keep_ms, get=True)
            if not isinstance(old, bytes) or int(orjson.loads(old)["version"]) != version:
                await self._redis.publish(self._channel, blob)
        except (RedisError, OSError, ValueError, KeyError) as exc:
            log.info("data versions: cannot share %s's version (%s)", source, exc)

    async def read(self, sources: Iterable[str]) -> dict[str, Reported]:
        names = list(sources)
        if not names:
            return {}
        try:
            blobs = await self._redis.mget([self._key("v", s) for s in names])
        except (RedisError, OSError) as exc:
            log.info("data versions: cannot read shared versions (%s)", exc)
            return {}
        out = {}
        for source, blob in zip(names, blobs, strict=True):
            if blob is not None:
                got = orjson.loads(blob)
                out[source] = Reported(int(got["version"]), float(got["checked_at"]))
        return out

    async def listen(self, on_version: OnVersion) -> None:
        """Call `on_version` for every version another instance reports as moved."""
        if self._task is None:
            self._task = asyncio.create_task(self._listen(on_version), name="data-versions-sub")

    async def _listen(self, on_version: OnVersion) -> None:
        while True:
            try:
                pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(self._channel)
                try:
                    async for message in pubsub.listen():
                        got: dict[str, Any] = orjson.loads(message["data"])
                        on_version(
                            str(got["source"]), int(got["version"]), float(got["checked_at"])
                        )
                finally:
                    with contextlib.suppress(RedisError, OSError):
                        await pubsub.aclose()
            except (RedisError, OSError, ValueError, KeyError) as exc:
                log.info("data versions: change messages lost (%s); resubscribing", exc)
                await asyncio.sleep(1.0)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._redis.aclose()


class PgChangeListener:
    """LISTEN kpi_metrics_changed on its own connection: `on_change(metric, version)` for
    every change the trigger of migration 0040 reports. Reconnects with a short backoff
    (changes sent meanwhile are caught by the periodic probe)."""

    def __init__(
        self,
        conninfo: str,
        on_change: Callable[[str, int], Awaitable[None] | None],
        *,
        connect_timeout_s: float = 2.0,
        backoff_max_s: float = 2.0,
    ) -> None:
        self._conninfo = conninfo
        self._on_change = on_change
        self._connect_timeout_s = connect_timeout_s
        self._backoff_max_s = backoff_max_s
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._forever(), name="kpi-changes-listener")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _forever(self) -> None:
        delay = 0.25
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo,
                    autocommit=True,
                    connect_timeout=max(1, int(self._connect_timeout_s)),
                    application_name="resolver-kpi-changes",
                ) as conn:
                    await conn.execute(f"LISTEN {PG_CHANNEL}")
                    self.listening.set()
                    delay = 0.25
                    async for notify in conn.notifies():
                        got = orjson.loads(notify.payload)
                        done = self._on_change(str(got["metric"]), int(got["version"]))
                        if done is not None:
                            await done
            except (psycopg.Error, OSError, ValueError, KeyError) as exc:
                log.warning("kpi changes listener: %s; retrying in %.2fs", exc, delay)
            self.listening.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._backoff_max_s)
