"""Both caches; Redis tests use the real server, and a closed port for an outage."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.cache import MemoryTTLCache, RedisCache
from tests.support.servers import free_port


async def test_memory_cache_ttl_and_isolation() -> None:
    now = [100.0]
    cache = MemoryTTLCache(clock=lambda: now[0])
    value = {"rows": [{"a": 1}]}
    await cache.set("k", value, 10)
    got = await cache.get("k")
    assert got == value
    got["rows"].append({"a": 2})  # callers cannot mutate the cached answer
    assert await cache.get("k") == value
    now[0] += 11
    assert await cache.get("k") is None


async def test_memory_cache_bounded() -> None:
    cache = MemoryTTLCache(max_entries=2)
    for k in "abc":
        await cache.set(k, {"k": k}, 60)
    assert await cache.get("a") is None and await cache.get("c") == {"k": "c"}


async def test_redis_round_trip_with_ttl(redis_url: str, cache_namespace: str) -> None:
    cache = RedisCache(redis_url, prefix=cache_namespace)
    try:
        assert await cache.ping()
        await cache.set("k", {"rows": [1, 2]}, 1)
        assert await cache.get("k") == {"rows": [1, 2]}
        assert await cache.get("missing") is None
        # the TTL is Redis's own
        raw = await cache._client.ttl(cache_namespace + "k")
        assert 0 < raw <= 1
    finally:
        await cache.aclose()


async def test_a_write_drops_the_keys_it_is_given_in_one_round_trip(
    redis_url: str, cache_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer's entry and the end of its failure note go together: one MULTI/EXEC."""
    mem = MemoryTTLCache()
    redis = RedisCache(redis_url, prefix=cache_namespace)
    try:
        for cache in (mem, redis):
            await cache.set("note", {"kind": "timeout"}, 60)
            await cache.set("k", {"rows": [1]}, 60, drop=("note", "absent"))
            assert await cache.get("k") == {"rows": [1]} and await cache.get("note") is None
            await cache.set("note", {"kind": "timeout"}, 60)
            await cache.set("k", {"rows": [2]}, 0, drop=("note",))  # no write: still drops
            assert await cache.get("k") == {"rows": [1]} and await cache.get("note") is None
        sent: list[list[Any]] = []
        execute = redis._client.connection_pool.connection_class.send_packed_command

        async def counted(conn: Any, command: Any, check_health: bool = True) -> None:
            sent.append(command)
            await execute(conn, command, check_health)

        monkeypatch.setattr(
            redis._client.connection_pool.connection_class, "send_packed_command", counted
        )
        await redis.set("k", {"rows": [3]}, 60, drop=("note",))
        monkeypatch.undo()
        assert len(sent) == 1  # MULTI, SET, DEL, EXEC written at once
        assert await redis.get("k") == {"rows": [3]}
    finally:
        await redis.aclose()


async def test_redis_down_is_a_fast_miss_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", breaker_s=30)
    try:
        assert await cache.get("k") is None
        assert cache._tripped()  # later calls skip Redis instead of stalling on each request
        await cache.set("k", {"a": 1}, 60)  # no raise
        assert await cache.get("k") is None
        assert not await cache.ping()
        assert any("treating as a miss" in r.getMessage() for r in caplog.records)
    finally:
        await cache.aclose()


async def test_unencodable_values_are_not_cached_and_never_raise(
    redis_url: str, cache_namespace: str
) -> None:
    value = {"rows": [{"x": 10**30}]}  # beyond orjson's 64-bit integers
    mem = MemoryTTLCache()
    await mem.set("k", value, 60)
    assert await mem.get("k") is None
    cache = RedisCache(redis_url, prefix=cache_namespace)
    try:
        await cache.set("k", value, 60)
        assert await cache.get("k") is None and not cache._tripped()
    finally:
        await cache.aclose()
