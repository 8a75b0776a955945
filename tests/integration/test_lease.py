"""Leases per key: the real Redis (unique prefixes per test) and the in-process equivalent."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.lease import LocalLeases, RedisLeases
from domain.lease import ABANDONED, BUSY, Outcome
from tests.support.clocks import until
from tests.support.servers import REDIS_URL, free_port


def _prefix() -> str:
    return f"wdr-test:{uuid.uuid4().hex[:8]}:"


def _waited_on(leases: Any, key: str, n: int = 1) -> bool:
    """`n` followers wait on `key`, and (Redis) the release message can reach them."""
    subscribed = getattr(leases, "_subscribed", None)
    return leases.waiting(key) == n and (subscribed is None or subscribed.is_set())


@pytest.fixture(params=["redis", "local"])
async def leases(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    if request.param == "redis":
        impl: Any = RedisLeases(REDIS_URL, prefix=_prefix(), ttl_s=5, heartbeat_s=0.2)
    else:
        impl = LocalLeases(ttl_s=5)
    yield impl
    await impl.aclose()


async def test_one_holder_and_token_checked_release(leases: Any) -> None:
    token = await leases.acquire("k")
    assert token
    assert await leases.acquire("k") is None  # held
    assert not await leases.release("k", "not-the-token", Outcome(ok=True))
    assert await leases.acquire("k") is None  # a wrong token released nothing
    assert await leases.release("k", token, Outcome(ok=True))
    assert not await leases.release("k", token, Outcome(ok=True))  # only once
    again = await leases.acquire("k")
    assert again and again != token
    assert await leases.acquire("other-key")  # leases are per key


async def test_followers_get_the_leaders_outcome(leases: Any) -> None:
    token = await leases.acquire("k")
    followers = [asyncio.create_task(leases.lead_or_follow("k", wait_s=5)) for _ in range(5)]
    await until(lambda: _waited_on(leases, "k", 5))
    assert not any(f.done() for f in followers)  # they wait for the leader
    await leases.release("k", token, Outcome(ok=False, kind="databricks_timeout", detail="slow"))
    roles = await asyncio.gather(*followers)
    for role in roles:
        assert not role.leads
        assert role.followed == Outcome(ok=False, kind="databricks_timeout", detail="slow")


async def test_follow_false_answers_busy_at_once(leases: Any) -> None:
    await leases.acquire("k")
    role = await leases.lead_or_follow("k", wait_s=5, follow=False)
    assert role.followed == BUSY


async def test_waiting_is_bounded(leases: Any) -> None:
    await leases.acquire("k")
    role = await leases.lead_or_follow("k", wait_s=0.4)
    assert role.leads and role.token is None  # resolve without the lease, not forever
    assert role.waited_s >= 0.4


async def test_the_lead_scope_releases_with_the_settled_outcome(leases: Any) -> None:
    async with leases.lead("k", wait_s=5) as lead:
        assert lead.leads and lead.held
        follower = asyncio.create_task(leases.lead_or_follow("k", wait_s=5))
        await until(lambda: _waited_on(leases, "k"))
        lead.settle(Outcome(ok=False, kind="postgres_error", detail="boom"))
    role = await follower
    assert role.followed == Outcome(ok=False, kind="postgres_error", detail="boom")
    async with leases.lead("k", wait_s=5) as lead:  # released: led again at once
        assert lead.leads and lead.held and not lead.takeover
        lead.settle(Outcome(ok=True))


async def test_scope_releases_on_failure_and_cancellation(leases: Any) -> None:
    entered = asyncio.Event()

    async def leader(fail: bool) -> None:
        async with leases.lead("k", wait_s=5) as lead:
            assert lead.leads and lead.held
            entered.set()
            if fail:
                raise RuntimeError("the run blew up")
            await asyncio.Event().wait()  # until cancelled

    with pytest.raises(RuntimeError):
        await leader(fail=True)
    token = await leases.acquire("k")  # released by the scope
    assert token
    await leases.release("k", token, Outcome(ok=True))

    entered.clear()
    task = asyncio.create_task(leader(fail=False))
    await entered.wait()
    follower = asyncio.create_task(leases.lead_or_follow("k", wait_s=5))
    await until(lambda: _waited_on(leases, "k"))
    task.cancel()
    role = await follower
    assert role.leads and role.token and role.takeover  # abandoned: the follower leads


async def test_redis_lease_ttl_exceeds_the_backend_timeout_and_beats() -> None:
    prefix = _prefix()
    leases = RedisLeases(REDIS_URL, prefix=prefix, ttl_s=40, heartbeat_s=0.2)
    try:
        token = await leases.acquire("k")
        assert token
        pttl = await leases._client.pttl(f"{prefix}lease:k")
        assert 35_000 < pttl <= 40_000
        await asyncio.sleep(1.0)  # several heartbeat TTLs (0.6 s): it is still alive
        assert await leases._client.exists(f"{prefix}lease:k:hb")
        assert await leases.acquire("k") is None
        await leases.release("k", token, Outcome(ok=True))
        assert not await leases._client.exists(f"{prefix}lease:k", f"{prefix}lease:k:hb")
    finally:
        await leases.aclose()


async def test_redis_takeover_when_the_leader_vanishes() -> None:
    prefix = _prefix()
    dead = RedisLeases(REDIS_URL, prefix=prefix, ttl_s=30, heartbeat_s=0.2)
    alive = RedisLeases(REDIS_URL, prefix=prefix, ttl_s=30, heartbeat_s=0.2)
    try:
        assert await dead.acquire("k")
        follower = asyncio.create_task(alive.lead_or_follow("k", wait_s=10))
        await asyncio.sleep(0.5)
        assert not follower.done()  # a beating leader is waited for
        await dead.aclose()  # the process dies: no release, no more beats
        role = await asyncio.wait_for(follower, 5)
        assert role.leads and role.token and role.takeover
        assert role.waited_s < 5  # well before the 30 s lease TTL
    finally:
        await alive.aclose()


async def test_redis_release_reaches_another_instance() -> None:
    prefix = _prefix()
    a = RedisLeases(REDIS_URL, prefix=prefix, ttl_s=30, heartbeat_s=0.2)
    b = RedisLeases(REDIS_URL, prefix=prefix, ttl_s=30, heartbeat_s=0.2)
    try:
        token = await a.acquire("k")
        assert token and await b.acquire("k") is None
        follower = asyncio.create_task(b.lead_or_follow("k", wait_s=10))
        await asyncio.sleep(0.3)
        await a.release("k", token, Outcome(ok=True))
        role = await asyncio.wait_for(follower, 5)
        assert role.followed == Outcome(ok=True)
    finally:
        await a.aclose()
        await b.aclose()


async def test_redis_down_falls_back_to_in_process_leases(caplog: pytest.LogCaptureFixture) -> None:
    leases = RedisLeases(f"redis://127.0.0.1:{free_port()}/0", ttl_s=5, heartbeat_s=0.2)
    try:
        token = await leases.acquire("k")
        assert token and token.startswith("local:")
        assert await leases.acquire("k") is None  # still one holder inside this process
        assert await leases.release("k", token, Outcome(ok=True))
        assert any("in-process leases" in r.getMessage() for r in caplog.records)
    finally:
        await leases.aclose()


async def test_local_lease_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    leases = LocalLeases(ttl_s=0.2)
    token = await leases.acquire("k")
    assert token and await leases.acquire("k") is None
    follower = asyncio.create_task(leases.lead_or_follow("k", wait_s=5))
    await asyncio.sleep(0.3)
    role = await asyncio.wait_for(follower, 2)
    assert role.leads and role.token  # the expired lease was taken
    outcome = Outcome(ok=False, kind=ABANDONED)
    assert not await leases.release("k", token, outcome)  # the old token no longer holds it
