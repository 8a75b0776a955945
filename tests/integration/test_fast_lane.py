"""The fast lane over the real PostgreSQL and Redis: two services on one database and one
cache prefix, one taking a cache answer's steps in the runner (the default) and one handing
every run to the compiled graph after cache_lookup (`fast_lane=False`), give the same answers for a fresh hit, a
stale answer, and a last good answer beside a failure note, on both backends."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
import pytest_asyncio

from graph.runner import DECIDE, LANE
from tests.integration.test_freshness import short_ttl_config
from tests.support.clocks import FakeClock
from tests.support.servers import (
    REDIS_URL,
    Service,
    create_database,
    drop_database,
    running_service,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

POLICIES = {"active_issues_count": (1, 30, 3600), "cost_avoided_mtd": (1, 0, 3600)}
# what may differ between two answers of the same entry read a moment apart
TIMING = ("freshness_seconds",)


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pair(
    clock: FakeClock, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Service, Service]]:
    url = create_database()
    tmp = tmp_path_factory.mktemp("lane")
    config = short_ttl_config(tmp, POLICIES)
    common: dict[str, Any] = {
        "database_url": url,
        "redis_url": REDIS_URL,
        "cache_prefix": f"wdr-test:{uuid.uuid4().hex[:8]}:",
        "config_dir": config,
        "refresh_ahead": False,
        "failure_backoff_s": 30,
        "clock": clock,  # one wall clock, moved past a TTL by the tests
    }
    try:
        async with (
            running_service(data_dir=tmp / "a", **common) as lane,
            running_service(data_dir=tmp / "b", fast_lane=False, **common) as graph,
        ):
            # the one difference between them: whether the runner takes a cache answer's
            # steps itself or hands every run to the compiled graph after cache_lookup
            assert lane.app.state.resolver.runner.lane == LANE
            assert graph.app.state.resolver.runner.lane == DECIDE
            yield lane, graph
    finally:
        drop_database(url)


async def _both(pair: tuple[Service, Service], widget: str) -> tuple[dict[str, Any], ...]:
    lane, graph = pair
    a = (await lane.data(widget, trace=True)).json()
    b = (await graph.data(widget, trace=True)).json()
    return a, b


def _same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert [(t["node"], t["outcome"]) for t in a["trace"]] == [
        (t["node"], t["outcome"]) for t in b["trace"]
    ]
    strip = ("trace", *TIMING)
    assert {k: v for k, v in a.items() if k not in strip} == {
        k: v for k, v in b.items() if k not in strip
    }
    assert abs(a["freshness_seconds"] - b["freshness_seconds"]) < 1.0


@pytest.mark.parametrize("widget", ["open-issues-kpi", "claims-filed-by-region"])
async def test_a_fresh_hit_is_the_same_answer(pair: tuple[Service, Service], widget: str) -> None:
    lane, _ = pair
    live = (await lane.data(widget, refresh=True)).json()
    assert live["live_data_unavailable"] is False and live["cache_hit"] is False
    a, b = await _both(pair, widget)
    assert a["cache_hit"] is True and not a["stale"]
    _same(a, b)


async def test_a_stale_answer_is_the_same_answer(
    pair: tuple[Service, Service], clock: FakeClock
) -> None:
    lane, _ = pair
    await lane.data("open-issues-kpi", refresh=True)
    clock.advance(1.2)  # past the 1 s TTL, inside the 30 s stale-while-revalidate
    a, b = await _both(pair, "open-issues-kpi")
    assert a["stale"] is True and a["stale_reason"] == "revalidating"
    _same(a, b)


async def test_a_last_good_answer_is_the_same_answer(
    pair: tuple[Service, Service], clock: FakeClock
) -> None:
    lane, _ = pair
    good = (await lane.data("cost-avoided-mtd", refresh=True)).json()
    clock.advance(1.1)  # expired, no SWR
    url = lane.settings.database_url
    assert url is not None
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("ALTER TABLE kpi_metrics_history RENAME TO kpi_away")
        try:
            # this one tries the backend (a graph run in both services) and notes the failure
            failed = (await lane.data("cost-avoided-mtd")).json()
        finally:
            await conn.execute("ALTER TABLE kpi_away RENAME TO kpi_metrics_history")
    assert failed["source"] == "postgres_error" and failed["data"] == good["data"]
    # the note stands for the 30 s backoff: both answer the last good entry beside it
    a, b = await _both(pair, "cost-avoided-mtd")
    assert a["source"] == "postgres_error" and a["stale"] is True and a["data"] == good["data"]
    assert [t["node"] for t in a["trace"]] == [
        "route",
        "cache_lookup",
        "mock_data",
        "degrade_or_return",
    ]
    _same(a, b)
