"""service/refresh.py's scheduling, on a fake clock (ticks driven by the test): when a read
key is refreshed ahead, from which estimate, and when an unread one is dropped."""

from __future__ import annotations

import asyncio
from typing import Any

from domain.freshness import Freshness
from service.refresh import Refresher

TTL = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _hint(key: str, expires_at: float | None, **flags: bool) -> Freshness:
    def flag(name: str) -> bool:
        return flags.get(name, False)

    return Freshness(
        key=key,
        expires_at=expires_at,
        ttl_s=TTL,
        revalidate=flag("revalidate"),
        live=flag("live"),
        hit=flag("hit"),
        skipped=flag("skipped"),
    )


def _hit(expires_at: float, key: str = "k") -> dict[str, Any]:
    return {"freshness": _hint(key, expires_at, hit=True)}


def _live(expires_at: float, backend_ms: float, key: str = "k") -> dict[str, Any]:
    trace = [
        {"node": "route", "ms": 0.1, "outcome": "ok"},
        {"node": "postgres_query", "ms": backend_ms, "outcome": "ok"},
        {"node": "degrade_or_return", "ms": 0.1, "outcome": "live"},
    ]
    return {"freshness": _hint(key, expires_at, live=True), "trace": trace}


async def _refresher(clock: Clock) -> tuple[Refresher, list[dict[str, Any]]]:
    runs: list[dict[str, Any]] = []

    async def run(inputs: dict[str, Any]) -> dict[str, Any]:
        runs.append(inputs)
        return {"freshness": _hint("k", None, skipped=True)}

    # ticks by hand (the refresher's own loop, every 2 s of real time, sees the same clock)
    return Refresher(run, clock=clock, tick_s=2.0), runs


async def test_a_read_key_is_refreshed_one_estimate_before_it_expires() -> None:
    clock = Clock()
    r, runs = await _refresher(clock)
    expires = clock.now + TTL
    r.after({"widget_id": "w"}, _hit(expires))
    r.after({"widget_id": "w"}, _live(expires, backend_ms=1000))  # the backend takes 1 s
    clock.now = expires - 1.0  # more than 0.9 of the estimate left: not yet
    r.tick()
    await asyncio.sleep(0)
    assert runs == []
    clock.now = expires - 0.85
    r.tick()
    await asyncio.sleep(0)
    assert [(x["background"], x["ahead_s"]) for x in runs] == [(True, 1.0)]
    await r.aclose()


async def test_one_slow_run_does_not_start_the_next_refresh_early() -> None:
    clock = Clock()
    r, runs = await _refresher(clock)
    expires = clock.now + TTL
    r.after({"widget_id": "w"}, _hit(expires))
    r.after({"widget_id": "w"}, _live(expires, backend_ms=500))
    r.after({"widget_id": "w"}, _live(expires, backend_ms=3000))  # it waited on something
    clock.now = expires - 1.0  # 0.9 x 3 s would start here, landing ~2 s before expiry
    r.tick()
    await asyncio.sleep(0)
    assert runs == []
    clock.now = expires - 0.4  # 0.9 x 0.5 s: the shortest recent run
    r.tick()
    await asyncio.sleep(0)
    assert len(runs) == 1 and runs[0]["ahead_s"] == 0.5
    await r.aclose()


async def test_a_key_nobody_reads_for_a_ttl_is_dropped() -> None:
    clock = Clock()
    r, runs = await _refresher(clock)
    r.after({"widget_id": "w"}, _hit(clock.now + TTL))
    assert r.tracked_keys() == ["k"]
    clock.now += TTL + 0.1
    r.tick()
    await asyncio.sleep(0)
    assert r.tracked_keys() == [] and runs == []
    await r.aclose()
