"""Near copies of answers (adapters/near_cache.py) over the real Redis: a copy answers a
read without a round trip until Redis names its key as changed, by anyone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from adapters.cache import RedisCache
from adapters.near_cache import NearCache
from domain.freshness import failure_note_key
from tests.support.clocks import FakeClock, until

K = "r2:acme:w:abc"  # an answer's key (domain/keys.py::ANSWER_KEY_PREFIX)


def reads(source: str) -> float:
    return REGISTRY.get_sample_value("wdr_cache_near_reads_total", {"source": source}) or 0.0


# (a write's own message arrives after it: a read before it keeps no copy, one after does)


class Reads:
    """How many reads of answer keys a block made from copies and from Redis."""

    def __enter__(self) -> Reads:
        self.near0, self.redis0 = reads("near"), reads("redis")
        return self

    def __exit__(self, *exc: object) -> None:
        self.near, self.redis = reads("near") - self.near0, reads("redis") - self.redis0


@pytest.fixture
async def other(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """Another Redis client: another instance, an operator."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def opened(cache: NearCache) -> NearCache:
    await cache.start()
    assert await cache.wait_ready()
    return cache


async def near_cache(
    redis_url: str, prefix: str, inner: RedisCache | None = None, **kw: Any
) -> NearCache:
    """Near copies over the real Redis, under the test's own key prefix, tracking on."""
    inner = inner or RedisCache(redis_url, prefix=prefix, socket_timeout_s=5)
    return await opened(NearCache(inner, redis_url, prefix=prefix, near_prefix="r2:", **kw))


@pytest.fixture
async def near(redis_url: str, cache_namespace: str) -> AsyncIterator[NearCache]:
    cache = await near_cache(redis_url, cache_namespace, retry_s=0.05)
    yield cache
    await cache.aclose()


async def test_a_copy_answers_until_another_client_changes_the_key(
    near: NearCache, other: aioredis.Redis, cache_namespace: str
) -> None:
    await near.set(K, {"v": 1}, 60)
    assert await near.sync()  # the message of this write is in
    with Reads() as r:
        assert await near.get(K) == {"v": 1}
        assert await near.get(K) == {"v": 1}
        assert await near.get(K) == {"v": 1}
    assert (r.redis, r.near) == (1, 2)
    await other.set(cache_namespace + K, orjson.dumps({"v": 2}), ex=60)
    assert await near.sync()
    with Reads() as r:
        assert await near.get(K) == {"v": 2}
    assert (r.redis, r.near) == (1, 0)
    await other.delete(cache_namespace + K)
    assert await near.sync()
    assert await near.get(K) is None


async def test_this_process_sees_its_own_writes_at_once(near: NearCache) -> None:
    await near.set(K, {"v": 1}, 60)
    assert await near.sync()  # the message of this write is in
    assert await near.get(K) == {"v": 1}
    await near.set(K, {"v": 2}, 60)  # no wait for Redis' message
    assert await near.get(K) == {"v": 2}
    await near.delete(K)
    assert await near.get(K) is None


async def test_a_write_drops_the_copies_of_the_keys_it_drops(near: NearCache) -> None:
    note = failure_note_key(K)  # an answer's failure note: kept near too
    await near.set(note, {"kind": "timeout"}, 60)
    assert await near.sync()
    assert await near.get(note) == {"kind": "timeout"}  # a copy now
    await near.set(K, {"v": 1}, 60, drop=(note,))  # no wait for Redis' message
    assert await near.get(note) is None and await near.get(K) == {"v": 1}


async def test_keys_outside_the_near_prefix_always_read_redis(
    near: NearCache, other: aioredis.Redis, cache_namespace: str
) -> None:
    await near.set("g2:acme:sql", {"v": 1}, 60)
    assert await near.sync()  # the message of this write is in
    with Reads() as r:
        assert await near.get("g2:acme:sql") == {"v": 1}
        await other.set(cache_namespace + "g2:acme:sql", orjson.dumps({"v": 2}), ex=60)
        assert await near.get("g2:acme:sql") == {"v": 2}  # no copy, no message needed
    assert (r.redis, r.near) == (0, 0)


async def test_latest_reads_past_the_copy(near: NearCache) -> None:
    await near.set(K, {"v": 1}, 60)
    assert await near.sync()  # the message of this write is in
    await near.get(K)
    with Reads() as r:
        assert await near.get(K, latest=True) == {"v": 1}
    assert (r.redis, r.near) == (1, 0)


async def test_a_read_that_overlaps_a_change_keeps_no_copy(
    redis_url: str, cache_namespace: str, other: aioredis.Redis
) -> None:
    """The value read may predate a change whose message arrived while it was read: it is
    answered, never kept (else the copy would outlive the change)."""
    near: NearCache | None = None

    class ChangedMeanwhile(RedisCache):
        armed = False

        async def read(self, key: str) -> bytes | None:
            blob = await super().read(key)
            if self.armed:
                self.armed = False
                await other.set(cache_namespace + K, orjson.dumps({"v": 2}), ex=60)
                assert near is not None and await near.sync()  # its message is in
            return blob

    inner = ChangedMeanwhile(redis_url, prefix=cache_namespace, socket_timeout_s=5)
    near = await near_cache(redis_url, cache_namespace, inner)
    try:
        await near.set(K, {"v": 1}, 60)
        assert await near.sync()  # the message of this write is in
        inner.armed = True
        assert await near.get(K) == {"v": 1}  # read before the change
        assert await near.get(K) == {"v": 2}  # not the kept old one
    finally:
        await near.aclose()


async def test_a_copy_lives_at_most_max_age(redis_url: str, cache_namespace: str) -> None:
    clock = FakeClock()
    near = await near_cache(redis_url, cache_namespace, max_age_s=5.0, clock=clock)
    try:
        await near.set(K, {"v": 1}, 60)
        assert await near.sync()  # the message of this write is in
        await near.get(K)
        clock.advance(4.9)
        with Reads() as r:
            await near.get(K)
        assert (r.redis, r.near) == (0, 1)
        clock.advance(0.2)
        with Reads() as r:
            await near.get(K)
        assert (r.redis, r.near) == (1, 0)
    finally:
        await near.aclose()


async def test_copies_are_bounded_in_bytes(redis_url: str, cache_namespace: str) -> None:
    near = await near_cache(redis_url, cache_namespace, max_bytes=16 * 1024)
    try:
        small = {"rows": "x" * 300}
        for i in range(60):  # ~19 KB of copies: the oldest go
            await near.set(f"{K}{i}", small, 60)
            assert await near.sync()  # the message of this write is in
            await near.get(f"{K}{i}")
        with Reads() as r:
            await near.get(f"{K}0")
            await near.get(f"{K}59")
        assert (r.redis, r.near) == (1, 1)
        await near.set(K + "big", {"rows": "x" * 2048}, 60)  # over max_bytes / 16: not kept
        assert await near.sync()  # the message of this write is in
        await near.get(K + "big")
        with Reads() as r:
            await near.get(K + "big")
        assert (r.redis, r.near) == (1, 0)
    finally:
        await near.aclose()


async def test_no_copies_while_the_tracking_connection_is_down(
    near: NearCache, other: aioredis.Redis, cache_namespace: str
) -> None:
    """A change while nobody listens could be missed: when the connection drops every copy
    goes and reads go to Redis until it is back (then copies are kept again)."""
    await near.set(K, {"v": 1}, 60)
    assert await near.sync()  # the message of this write is in
    await near.get(K)
    clients = await other.client_list()
    mine = [c["id"] for c in clients if c.get("name") == near.client_name]
    assert len(mine) == 1
    await other.execute_command("CLIENT", "KILL", "ID", mine[0])
    await until(lambda: not near.tracking)
    with Reads() as r:
        assert await near.get(K) == {"v": 1}
    assert (r.redis, r.near) == (1, 0)
    await until(lambda: near.tracking)
    await other.set(cache_namespace + K, orjson.dumps({"v": 3}), ex=60)
    assert await near.sync()
    with Reads() as r:
        assert await near.get(K) == {"v": 3}
        assert await near.get(K) == {"v": 3}
    assert (r.redis, r.near) == (1, 1)


async def test_a_redis_that_is_down_is_a_miss_and_no_copy(
    cache_namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.support.servers import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    near = NearCache(
        RedisCache(url, prefix=cache_namespace), url, prefix=cache_namespace, near_prefix="r2:"
    )
    await near.start()
    try:
        assert await near.get(K) is None
        assert not near.tracking
        assert not await near.wait_ready(0.2)
        assert "waiting" in near.describe()
        warned = [r for r in caplog.records if "near cache copies off" in r.getMessage()]
        assert len(warned) == 1 and "not available" in warned[0].getMessage()
    finally:
        await near.aclose()
