"""Leases on Redis, shared by every instance (see adapters/lease/__init__.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from adapters.lease.base import LocalLeases, _LeasesBase
from domain.lease import Outcome, Waited
from observability.redact import redact_url

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ Redis

# KEYS: lease, hb. ARGV: token, lease_ms, hb_ms. 1 = acquired, 2 = taken over, 0 = held.
_ACQUIRE = """
local cur = redis.call('get', KEYS[1])
if cur and redis.call('exists', KEYS[2]) == 1 then return 0 end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('set', KEYS[2], ARGV[1], 'PX', ARGV[3])
if cur then return 2 end
return 1
"""

# KEYS: lease, hb. ARGV: token, hb_ms. 1 = beating, 0 = the lease is no longer ours.
_BEAT = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('set', KEYS[2], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

# KEYS: lease, hb. ARGV: token, channel, message. Compare-and-delete, then publish.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('del', KEYS[1], KEYS[2])
  redis.call('publish', ARGV[2], ARGV[3])
  return 1
end
return 0
"""


class RedisLeases(_LeasesBase):
    """Leases shared by every instance on one Redis. See the module docstring.

    `sleep` is what the heartbeat waits with between beats (tests pass one they step, so
    a beat happens when they say, not when a loaded machine gets round to it)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "wdr:",
        ttl_s: float = 60.0,
        heartbeat_s: float = 1.0,
        poll_s: float = 0.25,
        socket_timeout_s: float = 0.25,
        breaker_s: float = 5.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if heartbeat_s <= 0 or ttl_s <= 3 * heartbeat_s:
            raise ValueError("the lease TTL must exceed three heartbeats")
        self._url = url
        self._client = aioredis.Redis.from_url(
            url,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=socket_timeout_s,
            retry_on_timeout=False,
            health_check_interval=0,
        )
        self._prefix = prefix
        self._channel = f"{prefix}lease-done"
        self._ttl_ms = int(ttl_s * 1000)
        self._beat_s = heartbeat_s
        self._hb_ms = int(heartbeat_s * 3000)
        self._poll_s = poll_s
        self._timeout = socket_timeout_s * 2
        self._breaker_s = breaker_s
        self._open_until = 0.0
        self._acquire = self._client.register_script(_ACQUIRE)
        self._beat = self._client.register_script(_BEAT)
        self._release = self._client.register_script(_RELEASE)
        self._local = LocalLeases(ttl_s=ttl_s)
        self._beats: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._waiters: dict[str, list[asyncio.Future[Outcome]]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._closed = False
        self._sleep = sleep
        self.polls = 0  # lease states read by waiting followers (tests wait on it)

    def describe(self) -> str:
        return f"redis {redact_url(self._url).split('://', 1)[-1]}"

    def _keys(self, key: str) -> list[str]:
        lease = f"{self._prefix}lease:{key}"
        return [lease, lease + ":hb"]

    # ---------------------------------------------------------------- breaker

    def _tripped(self) -> bool:
        return time.monotonic() < self._open_until

    def _trip(self, op: str, exc: BaseException) -> None:
        self._open_until = time.monotonic() + self._breaker_s
        log.warning(
            "lease %s failed (%s: %s); using in-process leases for %.0fs",
            op,
            type(exc).__name__,
            exc,
            self._breaker_s,
        )

    # ---------------------------------------------------------------- leader side

    async def acquire(self, key: str) -> str | None:
        if self._tripped():
            return await self._local_acquire(key)
        token = uuid.uuid4().hex
        try:
            got = await asyncio.wait_for(
                self._acquire(keys=self._keys(key), args=[token, self._ttl_ms, self._hb_ms]),
                self._timeout,
            )
        except (RedisError, OSError, TimeoutError) as exc:
            self._trip("acquire", exc)
            return await self._local_acquire(key)
        if not got:
            return None
        if got == 2:
            log.warning("lease %s: taken over from a leader that stopped beating", key)
        self._beats[(key, token)] = asyncio.create_task(self._beating(key, token))
        return token

    async def _local_acquire(self, key: str) -> str | None:
        token = await self._local.acquire(key)
        return None if token is None else "local:" + token

    async def _beating(self, key: str, token: str) -> None:
        keys = self._keys(key)
        deadline = time.monotonic() + self._ttl_ms / 1000
        while time.monotonic() < deadline:
            await self._sleep(self._beat_s)
            try:
                ours = await asyncio.wait_for(
                    self._beat(keys=keys, args=[token, self._hb_ms]), self._timeout
                )
            except (RedisError, OSError, TimeoutError) as exc:
                log.info("lease %s: heartbeat failed (%r)", key, exc)
                continue
            if not ours:
                log.warning("lease %s: lost while still running (it expired)", key)
                return

    async def release(self, key: str, token: str, outcome: Outcome) -> bool:
        if token.startswith("local:"):
            return await self._local.release(key, token.removeprefix("local:"), outcome)
        beat = self._beats.pop((key, token), None)
        if beat is not None:
            beat.cancel()
        message = orjson.dumps(
            {"key": key, "ok": outcome.ok, "kind": outcome.kind, "detail": outcome.detail}
        )
        try:
            released = await asyncio.wait_for(
                self._release(keys=self._keys(key), args=[token, self._channel, message]),
                self._timeout,
            )
        except (RedisError, OSError, TimeoutError) as exc:
            self._trip("release", exc)
            return False  # it expires by itself; followers take over once it stops beating
        return bool(released)

    # ---------------------------------------------------------------- follower side

    async def _state(self, key: str) -> tuple[bool, bool]:
        lease, hb = self._keys(key)
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.exists(lease)
            pipe.exists(hb)
            got = await asyncio.wait_for(pipe.execute(), self._timeout)
        self.polls += 1
        return bool(got[0]), bool(got[1])

    async def wait(self, key: str, timeout_s: float) -> Waited:
        if self._tripped():
            return await self._local.wait(key, timeout_s)
        self._ensure_listener()
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, []).append(future)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                if future.done():
                    return Waited("done", future.result())
                try:
                    held, beating = await self._state(key)
                except (RedisError, OSError, TimeoutError) as exc:
                    self._trip("wait", exc)
                    return Waited("gone")
                if future.done():
                    return Waited("done", future.result())
                if not held:
                    return Waited("gone")
                if not beating:
                    return Waited("vanished")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return Waited("timeout")
                poll = self._poll_s if self._subscribed.is_set() else min(self._poll_s, 0.05)
                with contextlib.suppress(TimeoutError):
                    return Waited(
                        "done", await asyncio.wait_for(asyncio.shield(future), min(poll, remaining))
                    )
        finally:
            waiters = self._waiters.get(key, [])
            if future in waiters:
                waiters.remove(future)
            if not waiters:
                self._waiters.pop(key, None)

    def waiting(self, key: str) -> int:
        """How many followers in this process wait for the key's outcome now."""
        return len(self._waiters.get(key, [])) + self._local.waiting(key)

    def _ensure_listener(self) -> None:
        if self._listener is None and not self._closed:
            self._listener = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        backoff = 0.1
        while not self._closed:
            client = aioredis.Redis.from_url(self._url, socket_connect_timeout=1.0)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                self._subscribed.set()
                backoff = 0.1
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._dispatch(message["data"])
            except (RedisError, OSError) as exc:
                log.info("lease pub/sub dropped (%r); polling until it is back", exc)
            finally:
                self._subscribed.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    def _dispatch(self, data: bytes) -> None:
        try:
            doc = orjson.loads(data)
            outcome = Outcome(ok=bool(doc["ok"]), kind=doc.get("kind"), detail=doc.get("detail"))
            key = str(doc["key"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("lease: ignoring a malformed release message")
            return
        for future in self._waiters.get(key, []):
            if not future.done():
                future.set_result(outcome)

    async def ping(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self._client.ping(), self._timeout))
        except (RedisError, OSError, TimeoutError):
            return False

    async def aclose(self) -> None:
        self._closed = True
        for task in self._beats.values():
            task.cancel()
        self._beats.clear()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        await self._local.aclose()
        await self._client.aclose()
