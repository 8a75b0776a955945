"""Result caches: Redis when REDIS_URL is set, an in-process TTL cache otherwise.

Both never raise into a request: a cache that is down or slow is a miss (WARN log).
Redis gets short socket timeouts and a circuit breaker, so an outage costs one short
timeout every `breaker_s` seconds instead of a stall on every request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from observability.redact import redact_url

log = logging.getLogger(__name__)


def _encode(key: str, value: dict[str, Any]) -> bytes | None:
    """Serialized value, or None (with a warning) when it cannot be encoded: not cached."""
    try:
        return orjson.dumps(value)
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        log.warning("not caching %s: %s", key, exc)
        return None


class MemoryTTLCache:
    """A bounded LRU with per-entry expiry. Values are stored serialized, so a caller
    can never mutate a cached answer."""

    def __init__(self, *, max_entries: int = 10_000, clock: Any = time.monotonic) -> None:
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max = max_entries
        self._clock = clock

    async def get(self, key: str, *, latest: bool = False) -> dict[str, Any] | None:
        item = self._data.get(key)
        if item is None:
            return None
        expires, blob = item
        if expires <= self._clock():
            self._data.pop(key, None)
            return None
        self._data.move_to_end(key)
        value: dict[str, Any] = orjson.loads(blob)
        return value

    async def set(
        self, key: str, value: dict[str, Any], ttl_seconds: int, *, drop: Sequence[str] = ()
    ) -> None:
        for gone in drop:
            self._data.pop(gone, None)
        if ttl_seconds <= 0:
            return
        blob = _encode(key, value)
        if blob is None:
            return
        self._data[key] = (self._clock() + ttl_seconds, blob)
        self._data.move_to_end(key)
        while len(self._data) > self._max:
            self._data.popitem(last=False)

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        self._data.clear()

    def describe(self) -> str:
        return "memory"


class RedisCache:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "wdr:",
        socket_timeout_s: float = 0.1,
        breaker_s: float = 5.0,
    ) -> None:
        self._client = aioredis.Redis.from_url(
            url,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=socket_timeout_s,
            retry_on_timeout=False,
            health_check_interval=0,
        )
        self._prefix = prefix
        self._timeout = socket_timeout_s
        self._breaker_s = breaker_s
        self._open_until = 0.0
        # no password, in userinfo or in the query string; no scheme (the kind says redis)
        self._url_for_logs = redact_url(url).split("://", 1)[-1]

    def _tripped(self) -> bool:
        return time.monotonic() < self._open_until

    def _trip(self, op: str, exc: BaseException) -> None:
        self._open_until = time.monotonic() + self._breaker_s
        log.warning(
            "cache %s failed (%s: %s); treating as a miss for %.0fs",
            op,
            type(exc).__name__,
            exc,
            self._breaker_s,
        )

    @property
    def timeout_s(self) -> float:
        return self._timeout

    async def get(self, key: str, *, latest: bool = False) -> dict[str, Any] | None:
        blob = await self.read(key)
        return None if blob is None else self.decode(key, blob)

    async def read(self, key: str) -> bytes | None:
        """The entry's serialized bytes, or None (absent, or Redis down or slow: a miss)."""
        if self._tripped():
            return None
        try:
            async with asyncio.timeout(self._timeout * 2):  # a scope, not wait_for's task
                blob = await self._client.get(self._prefix + key)
        except (RedisError, OSError, TimeoutError) as exc:
            self._trip("get", exc)
            return None
        return blob if isinstance(blob, bytes) else None  # decode_responses is off: bytes

    @staticmethod
    def decode(key: str, blob: bytes) -> dict[str, Any] | None:
        try:
            value: dict[str, Any] = orjson.loads(blob)
        except orjson.JSONDecodeError as exc:
            log.warning("cache entry %s is corrupt (%s); treating as a miss", key, exc)
            return None
        return value

    async def set(
        self, key: str, value: dict[str, Any], ttl_seconds: int, *, drop: Sequence[str] = ()
    ) -> None:
        """The write and the deletes of `drop` in one round trip (MULTI/EXEC: a reader sees
        both or neither)."""
        if self._tripped():
            return
        blob = _encode(key, value) if ttl_seconds > 0 else None
        try:
            async with asyncio.timeout(self._timeout * 2):
                if not drop:
                    if blob is not None:
                        await self._client.set(self._prefix + key, blob, ex=ttl_seconds)
                    return
                async with self._client.pipeline(transaction=True) as pipe:
                    if blob is not None:
                        pipe.set(self._prefix + key, blob, ex=ttl_seconds)
                    pipe.delete(*(self._prefix + k for k in drop))
                    await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            self._trip("set", exc)

    async def delete(self, key: str) -> None:
        if self._tripped():
            return
        try:
            async with asyncio.timeout(self._timeout * 2):
                await self._client.delete(self._prefix + key)
        except (RedisError, OSError, TimeoutError) as exc:
            self._trip("delete", exc)

    async def ping(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self._client.ping(), self._timeout * 2))
        except (RedisError, OSError, TimeoutError):
            return False

    async def aclose(self) -> None:
        await self._client.aclose()

    def describe(self) -> str:
        return f"redis {self._url_for_logs}"
