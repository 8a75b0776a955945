"""Near copies of Redis cache entries in this process, kept honest by Redis itself.

A cache hit on Redis costs a network round trip (about 0.1 ms from Python here, more when
the machine is busy): most of what a hit costs beyond the HTTP server's own floor. This
wraps `RedisCache` with Redis' server-assisted client-side caching (`CLIENT TRACKING`,
Redis 6+), in broadcast mode over the answer keys' prefix:

- one connection of its own (RESP2) says `CLIENT TRACKING ON REDIRECT <its id> BCAST
  PREFIX <prefix><near prefix>` and subscribes to `__redis__:invalidate`: Redis then names
  every key under that prefix that anyone (any instance, an operator, an expiry) changes;
- a read keeps the entry it got (serialized, so no caller can mutate it) for at most
  `max_age_s`; the next read of that key answers from it without a round trip, until Redis
  names the key (the copy is dropped) or the age bound passes;
- a read whose round trip overlapped an invalidation (of any key) keeps nothing: the answer
  may predate the change; this process's own writes and deletes drop the copy at once;
- while the tracking connection is not up (at start, after it drops) nothing is kept and
  every read goes to Redis; it reconnects after `retry_s`, dropping every copy;
- `latest=True` reads past any copy (a leader's second read after taking the lease).

What another instance writes is seen here as soon as Redis' message arrives (well under a
millisecond on a LAN); a lost message (a connection that dies silently) is bounded by
`max_age_s`. `sync()` waits until every change Redis made before the call has been applied
here (a PING on the tracking connection: its answer comes after every earlier message).
Only keys under `near_prefix` (resolved answers and their failure notes) get copies;
approved SQL and the rest go to Redis every time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from adapters.cache import RedisCache
from observability import metrics as m

log = logging.getLogger(__name__)

INVALIDATE_CHANNEL = b"__redis__:invalidate"


class NearCache:
    """The Cache port over `RedisCache`, with near copies of the keys under `near_prefix`."""

    def __init__(
        self,
        redis: RedisCache,
        url: str,
        *,
        prefix: str,
        near_prefix: str,
        max_age_s: float = 5.0,
        max_bytes: int = 64 * 1024 * 1024,
        retry_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self._redis = redis
        self._pool = aioredis.ConnectionPool.from_url(
            url,
            protocol=2,  # invalidations as pub/sub messages on a redirect connection
            socket_timeout=None,  # it waits for messages as long as there are none
            socket_connect_timeout=max(1.0, redis.timeout_s * 10),
            socket_keepalive=True,
        )
        self._tracked = prefix + near_prefix
        self._name = "wdr-near-" + "".join(c if c.isalnum() else "-" for c in prefix).strip("-")
        self._near_prefix = near_prefix
        self._prefix_len = len(prefix)
        self._max_age_s = max_age_s
        self._max_bytes = max_bytes
        self._max_item = max(1, max_bytes // 16)
        self._retry_s = retry_s
        self._clock = clock
        self._sleep = sleep
        self._copies: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._bytes = 0
        self._epoch = 0  # moves with every invalidation: a read that overlapped one keeps nothing
        self._ready = False
        self._warned = False
        self._task: asyncio.Task[None] | None = None
        self._conn: Any = None
        self._pongs: list[asyncio.Future[None]] = []
        self._up = asyncio.Event()

    # ------------------------------------------------------------------ the Cache port

    async def get(self, key: str, *, latest: bool = False) -> dict[str, Any] | None:
        near = key.startswith(self._near_prefix)
        if near and not latest and self._ready:
            item = self._copies.get(key)
            if item is not None:
                if item[0] > self._clock():
                    self._copies.move_to_end(key)
                    m.CACHE_NEAR_READS.labels("near").inc()
                    value: dict[str, Any] = orjson.loads(item[1])
                    return value
                self._drop(key)
        epoch = self._epoch
        blob = await self._redis.read(key)
        if blob is None:
            return None
        found = self._redis.decode(key, blob)
        if near:
            m.CACHE_NEAR_READS.labels("redis").inc()
            if found is not None and self._ready and epoch == self._epoch:
                self._keep(key, blob)
        return found

    async def set(
        self, key: str, value: dict[str, Any], ttl_seconds: int, *, drop: Sequence[str] = ()
    ) -> None:
        for k in (key, *drop):
            self._forget(k)
        await self._redis.set(key, value, ttl_seconds, drop=drop)
        for k in (key, *drop):
            self._forget(k)

    async def delete(self, key: str) -> None:
        self._forget(key)
        await self._redis.delete(key)
        self._forget(key)

    async def ping(self) -> bool:
        return await self._redis.ping()

    @property
    def redis(self) -> RedisCache:
        """The Redis cache under the copies."""
        return self._redis

    @property
    def tracking(self) -> bool:
        """Whether the tracking connection is up (copies are kept and answered)."""
        return self._ready

    @property
    def client_name(self) -> str:
        """The tracking connection's name in Redis' CLIENT LIST."""
        return self._name

    def describe(self) -> str:
        return f"{self._redis.describe()} (near copies {'on' if self._ready else 'waiting'})"

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the tracking connection (in the background: a Redis that is down now
        only means no copies until it is up)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._listen())

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._down()
        await self._pool.aclose()
        await self._redis.aclose()

    async def sync(self, timeout_s: float = 5.0) -> bool:
        """Wait until every change Redis made before this call has been applied here.
        False when the tracking connection is not up (then no copies are kept anyway)."""
        if not self._ready or self._conn is None:
            return False
        pong: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pongs.append(pong)
        try:
            await self._conn.send_command("PING")
            async with asyncio.timeout(timeout_s):
                await pong
        except (RedisError, OSError, TimeoutError):
            return False
        return True

    async def wait_ready(self, timeout_s: float = 10.0) -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                await self._up.wait()
        except TimeoutError:
            return False
        return True

    # ------------------------------------------------------------------ the copies

    def _keep(self, key: str, blob: bytes) -> None:
        if len(blob) > self._max_item:
            return
        self._drop(key)
        self._copies[key] = (self._clock() + self._max_age_s, blob)
        self._bytes += len(blob)
        while self._bytes > self._max_bytes and self._copies:
            _, (_, old) = self._copies.popitem(last=False)
            self._bytes -= len(old)

    def _drop(self, key: str) -> None:
        item = self._copies.pop(key, None)
        if item is not None:
            self._bytes -= len(item[1])

    def _forget(self, key: str) -> None:
        """This process changes `key`: no copy of it, and no read in flight keeps one."""
        self._epoch += 1
        self._drop(key)

    def _clear(self) -> None:
        self._epoch += 1
        self._copies.clear()
        self._bytes = 0

    def _invalidated(self, keys: list[bytes] | None) -> None:
        self._epoch += 1
        if keys is None:  # FLUSHDB / FLUSHALL: everything
            self._clear()
            return
        m.CACHE_NEAR_INVALIDATIONS.inc(len(keys))
        for raw in keys:
            self._drop(raw.decode()[self._prefix_len :])

    def _down(self) -> None:
        self._ready = False
        self._up.clear()
        self._conn = None
        self._clear()
        for pong in self._pongs:
            if not pong.done():
                pong.set_result(None)
        self._pongs.clear()

    # ------------------------------------------------------------------ tracking

    async def _listen(self) -> None:
        while True:
            conn = self._pool.make_connection()
            try:
                await conn.connect()
                await conn.send_command("CLIENT", "SETNAME", self._name)
                await conn.read_response()
                await conn.send_command("CLIENT", "ID")
                client_id = await conn.read_response()
                await conn.send_command(
                    "CLIENT", "TRACKING", "ON", "REDIRECT", client_id, "BCAST", "PREFIX",
                    self._tracked,
                )  # fmt: skip
                await conn.read_response()
                await conn.send_command("SUBSCRIBE", INVALIDATE_CHANNEL)
                await conn.read_response()
                self._clear()  # whatever changed while nobody listened
                self._conn, self._ready, self._warned = conn, True, False
                self._up.set()
                log.info("near cache copies on (tracking %s*)", self._tracked)
                while True:
                    self._on_message(await conn.read_response(timeout=None))
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if self._ready or not self._warned:  # once per outage, not every retry
                    self._warned = True
                    log.warning(
                        "near cache copies off (every read asks Redis): tracking %s (%s: %s)",
                        "connection lost" if self._ready else "not available",
                        type(exc).__name__,
                        exc,
                    )
            finally:
                self._down()
                await conn.disconnect()
            await self._sleep(self._retry_s)

    def _on_message(self, message: Any) -> None:
        if not isinstance(message, list) or not message:
            return
        kind = message[0]
        if kind == b"message" and len(message) == 3 and message[1] == INVALIDATE_CHANNEL:
            self._invalidated(message[2])
        elif kind == b"pong":
            pongs, self._pongs = self._pongs, []
            for pong in pongs:
                if not pong.done():
                    pong.set_result(None)
