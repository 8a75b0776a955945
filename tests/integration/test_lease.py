"""Leases per key: the real Redis (unique prefixes per test) and the in-process equivalent.

No test waits for the wall clock: followers are waited for by condition (they wait, and on
Redis they have read the lease's state once, so only the release message can wake them),
heartbeats are stepped by the test (`Beats`), and a heartbeat key's expiry is brought
forward (`PEXPIRE`) instead of slept through. Redis calls get a generous socket timeout,
so a loaded machine never trips the breaker into the in-process fallback."""

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

SLOW_OK = 5.0  # socket timeout of the tests' Redis leases: slow is not down here
NO_POLL = 3600.0  # a follower's poll interval: only the release message wakes it


def _prefix() -> str:
    return f"wdr-test:{uuid.uuid4().hex[:8]}:"


def _redis(prefix: str | None = None, **kw: Any) -> RedisLeases:
    kw.setdefault("ttl_s", 60)
    kw.setdefault("heartbeat_s", 5)  # heartbeat TTL 15 s: no beat is missed under load
    kw.setdefault("poll_s", NO_POLL)
    return RedisLeases(REDIS_URL, prefix=prefix or _prefix(), socket_timeout_s=SLOW_OK, **kw)


async def _subscribed(leases: RedisLeases) -> None:
    """Open the leases' release-message subscription before any follower waits."""
    leases._ensure_listener()
    await until(leases._subscribed.is_set)


def _polls(leases: Any) -> int:
    return int(getattr(leases, "polls", 0))


def _waited_on(leases: Any, key: str, n: int = 1, polls_before: int = 0) -> bool:
    """`n` followers wait on `key` and (Redis) each has read the lease's state since
    `polls_before`: from now on only the release message wakes them."""
    polled = not isinstance(leases, RedisLeases) or leases.polls >= polls_before + n
    return leases.waiting(key) == n and polled


class Beats:
    """A heartbeat sleeper the test steps: each `sleep` returns when `step()` says."""

    def __init__(self) -> None:
        self.calls = 0  # sleeps begun by the heartbeat loop
        self.steps = 0
        self._go: asyncio.Queue[None] = asyncio.Queue()

    async def sleep(self, _seconds: float) -> None:
        self.calls += 1
        await self._go.get()

    async def step(self) -> None:
        """One beat: it is done when the heartbeat loop sleeps again."""
        await until(lambda: self.calls > self.steps)  # the loop sleeps
        self.steps += 1
        self._go.put_nowait(None)
        await until(lambda: self.calls > self.steps)  # it beat, and sleeps again


@pytest.fixture(params=["redis", "local"])
async def leases(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    if request.param == "redis":
        impl: Any = _redis()
        await _subscribed(impl)
    else:
        impl = LocalLeases(ttl_s=60)
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
    polls = _polls(leases)
    followers = [asyncio.create_task(leases.lead_or_follow("k", wait_s=60)) for _ in range(5)]
    await until(lambda: _waited_on(leases, "k", 5, polls))
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
        polls = _polls(leases)
        follower = asyncio.create_task(leases.lead_or_follow("k", wait_s=60))
        await until(lambda: _waited_on(leases, "k", 1, polls))
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
    polls = _polls(leases)
    follower = asyncio.create_task(leases.lead_or_follow("k", wait_s=60))
    await until(lambda: _waited_on(leases, "k", 1, polls))
    task.cancel()
    role = await follower
    assert role.leads and role.token and role.takeover  # abandoned: the follower leads


async def test_redis_lease_ttl_exceeds_the_backend_timeout_and_beats() -> None:
    prefix = _prefix()
    beats = Beats()
    leases = _redis(prefix, ttl_s=40, heartbeat_s=5, sleep=beats.sleep)
    lease, hb = f"{prefix}lease:k", f"{prefix}lease:k:hb"
    try:
        token = await leases.acquire("k")
        assert token
        pttl = await leases._client.pttl(lease)
        assert 35_000 < pttl <= 40_000
        # as if most of the heartbeat's 15 s TTL had passed: a beat renews it
        for _ in range(3):
            assert await leases._client.pexpire(hb, 2_000)
            await beats.step()
            assert 2_000 < await leases._client.pttl(hb) <= 15_000
        assert await leases.acquire("k") is None  # beating: still held
        await leases.release("k", token, Outcome(ok=True))
        assert not await leases._client.exists(lease, hb)
        assert leases._beats == {}  # the release stopped the heartbeat
    finally:
        await leases.aclose()


async def test_redis_takeover_when_the_leader_vanishes() -> None:
    prefix = _prefix()
    beats = Beats()
    dead = _redis(prefix, sleep=beats.sleep)  # lease TTL 60 s, heartbeat TTL 15 s
    alive = _redis(prefix, poll_s=0.05)  # follows by polling the lease's state
    hb = f"{prefix}lease:k:hb"
    try:
        assert await dead.acquire("k")
        follower = asyncio.create_task(alive.lead_or_follow("k", wait_s=60))
        polls = alive.polls
        await until(lambda: alive.polls >= polls + 3)  # it has seen the lease held
        await beats.step()  # a beat while it waits
        await until(lambda: alive.polls >= polls + 6)
        assert not follower.done()  # a beating leader is waited for
        await dead.aclose()  # the process dies: no release, no more beats
        assert dead._beats == {}
        assert await alive._client.pexpire(hb, 1)  # its heartbeat TTL runs out (not slept)
        role = await asyncio.wait_for(follower, 30)
        assert role.leads and role.token and role.takeover
        # taken over on the heartbeat, not the lease's 60 s TTL: the lease key still lived
        assert await alive._client.pttl(f"{prefix}lease:k") > 30_000
    finally:
        await alive.aclose()


async def test_redis_release_reaches_another_instance() -> None:
    prefix = _prefix()
    a = _redis(prefix)
    b = _redis(prefix)  # its followers wait for the release message only
    try:
        await _subscribed(b)
        token = await a.acquire("k")
        assert token and await b.acquire("k") is None
        polls = b.polls
        follower = asyncio.create_task(b.lead_or_follow("k", wait_s=60))
        await until(lambda: _waited_on(b, "k", 1, polls))
        await a.release("k", token, Outcome(ok=True))
        role = await asyncio.wait_for(follower, 30)
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
    follower = asyncio.create_task(leases.lead_or_follow("k", wait_s=60))
    role = await asyncio.wait_for(follower, 30)  # it waits out the 0.2 s TTL, however long
    assert role.leads and role.token  # the expired lease was taken
    outcome = Outcome(ok=False, kind=ABANDONED)
    assert not await leases.release("k", token, outcome)  # the old token no longer holds it
