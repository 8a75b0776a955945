"""Freshness over the real PostgreSQL and Redis: stale-while-revalidate, the last good
answer before the mock (each failure kind of each backend), refresh-ahead, and leases
released on failure. The cross-process lease tests are in test_freshness_fleet.py."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio
import yaml

from domain.freshness import failure_note_key
from fakes.databricks_sea import FakeSeaServer
from tests.support.clocks import FakeClock
from tests.support.servers import (
    REDIS_URL,
    Service,
    copy_config,
    create_database,
    drop_database,
    redis_client_of,
    running_service,
    sea_settings,
    service_settings,
    settled,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

# (ttl, swr, sie) per metric for these tests; the widgets are the demo's
POLICIES = {
    "active_issues_count": (1, 30, 3600),  # open-issues-kpi, issues-by-severity: SWR
    "cost_avoided_mtd": (1, 0, 3600),  # cost-avoided-mtd: no SWR, last good on failure
    "nba_taken_pct": (1, 0, 1),  # nba-taken-by-channel: last good only 1 s past the TTL
    "claims_in_progress_count": (2, 2, 3600),  # claims-in-progress-trend: refresh-ahead
    "critical_alerts_count_15min": (2, 2, 3600),  # critical-alerts-15m: read once, dropped
}


def short_ttl_config(tmp: Path, policies: dict[str, tuple[int, int, int]]) -> Path:
    config = copy_config(tmp)
    path = config / "metric_routing.yaml"
    doc = yaml.safe_load(path.read_text())
    for metric, (ttl, swr, sie) in policies.items():
        doc["metrics"][metric] |= {
            "ttl_seconds": ttl,
            "stale_while_revalidate_seconds": swr,
            "stale_if_error_seconds": sie,
        }
    path.write_text(yaml.safe_dump(doc))
    return config


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    """The service's wall clock: a test moves it past a TTL instead of sleeping."""
    return FakeClock()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def svc(
    db_url: str, clock: FakeClock, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Service]:
    tmp = tmp_path_factory.mktemp("fresh")
    async with running_service(
        clock=clock,
        **service_settings(db_url, tmp / "data"),
        config_dir=short_ttl_config(tmp, POLICIES),
        failure_backoff_s=0.5,
        lease_heartbeat_s=0.2,
        refresh_ahead=False,  # on in its own test below
    ) as s:
        yield s


@contextlib.contextmanager
def counting_queries(svc: Service) -> Iterator[Counter[str]]:
    """Counts the real gateway's queries per metric (they still run)."""
    gateway: Any = svc.res.context.postgres
    calls: Counter[str] = Counter()
    real = gateway.run_metric

    async def counting(metric: Any, intent: Any, **kw: Any) -> Any:
        calls[metric.name] += 1
        return await real(metric, intent, **kw)

    gateway.run_metric = counting
    try:
        yield calls
    finally:
        gateway.run_metric = real


@pytest.fixture
def backend_calls(svc: Service) -> Iterator[Counter[str]]:
    with counting_queries(svc) as calls:
        yield calls


async def _exec(url: str, sql: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(sql)


async def _until(predicate: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = predicate()
        if await done if asyncio.iscoroutine(done) else done:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def _idle(svc: Service) -> None:
    """Wait until no background refresh runs."""
    await _until(lambda: not svc.app.state.resolver.refresher._running)


# ------------------------------------------------------------------ stale-while-revalidate


async def test_expired_entry_is_answered_at_once_flagged_and_refreshed_once(
    svc: Service, clock: FakeClock, backend_calls: Counter[str]
) -> None:
    first = (await svc.data("open-issues-kpi", refresh=True)).json()
    assert first["source"] == "postgres" and first["stale"] is False
    assert first["stale_reason"] is None
    await _idle(svc)
    clock.advance(1.2)  # past the 1 s TTL, inside the 30 s window
    backend_calls.clear()
    bodies = [
        r.json() for r in await asyncio.gather(*(svc.data("open-issues-kpi") for _ in range(8)))
    ]
    for b in bodies:
        assert b["cache_hit"] is True and b["stale"] is True, b
        assert b["stale_reason"] == "revalidating" and b["live_data_unavailable"] is False
        assert b["data"] == first["data"] and b["resolved_at"] == first["resolved_at"]
        assert b["freshness_seconds"] >= 1.2  # the true age of the data shown
    await _idle(svc)
    assert backend_calls["active_issues_count"] == 1  # one background refresh for all eight
    after = (await svc.data("open-issues-kpi")).json()
    assert after["cache_hit"] is True and after["stale"] is False
    assert after["resolved_at"] > first["resolved_at"] and after["freshness_seconds"] < 1.0


# ------------------------------------------------------------------ last good before mock


async def _postgres_error(url: str) -> tuple[Any, Any]:
    async def start() -> None:
        await _exec(url, "ALTER TABLE kpi_metrics_history RENAME TO kpi_metrics_history_away")

    async def stop() -> None:
        await _exec(url, "ALTER TABLE kpi_metrics_history_away RENAME TO kpi_metrics_history")

    return start, stop


async def test_last_good_answer_when_the_backend_fails_past_the_ttl(
    svc: Service, clock: FakeClock, db_url: str
) -> None:
    good = (await svc.data("cost-avoided-mtd", refresh=True)).json()
    clock.advance(1.1)  # expired, no SWR: the viewer waits for the backend ...
    start, stop = await _postgres_error(db_url)
    await start()
    try:
        body = (await svc.data("cost-avoided-mtd")).json()
    finally:
        await stop()
    # ... which fails: the last good answer, flagged, with its true age
    assert body["live_data_unavailable"] is True and body["source"] == "postgres_error"
    assert body["stale"] is True and body["stale_reason"] == "postgres_error"
    assert body["data"] == good["data"] and body["resolved_at"] == good["resolved_at"]
    assert body["freshness_seconds"] >= 1.1 and "kpi_metrics_history" in body["error_detail"]
    assert body["cache_hit"] is True and body["executed"] is True
    # for the failure's backoff (0.5 s here) every viewer gets the last good answer at once,
    # without waiting on the backend; then one background retry brings the entry back
    again = (await svc.data("cost-avoided-mtd", trace=True)).json()
    assert again["source"] == "postgres_error" and again["data"] == good["data"]
    assert [t["node"] for t in again["trace"]] == [
        "route",
        "cache_lookup",
        "mock_data",
        "degrade_or_return",
    ]
    clock.advance(0.6)
    await svc.data("cost-avoided-mtd")  # the backoff is over: a background retry starts
    await _idle(svc)
    live = (await svc.data("cost-avoided-mtd")).json()
    assert live["source"] == "postgres" and live["stale"] is False
    assert live["resolved_at"] > good["resolved_at"]


async def test_a_failure_never_overwrites_the_last_good_entry(svc: Service, db_url: str) -> None:
    good = (await svc.data("issues-by-severity", refresh=True)).json()
    cache = svc.res.context.cache
    prefix = svc.settings.cache_prefix
    found = [
        k.decode().removeprefix(prefix)
        async for k in redis_client_of(cache).scan_iter(f"{prefix}*:issues-by-severity:*")
    ]
    assert len(found) == 1
    key = found[0]
    before = await cache.get(key)
    assert before is not None and before["rows"] == good["data"]
    start, stop = await _postgres_error(db_url)
    await start()
    try:
        body = (await svc.data("issues-by-severity", refresh=True)).json()
    finally:
        await stop()
    assert body["source"] == "postgres_error" and body["data"] == good["data"]
    assert await cache.get(key) == before  # untouched: degraded answers are never cached
    note = await cache.get(failure_note_key(key))
    assert note is not None and note["kind"] == "postgres_error"
    # a refresh that succeeds clears the note
    assert (await svc.data("issues-by-severity", refresh=True)).json()["source"] == "postgres"
    assert await cache.get(failure_note_key(key)) is None


async def test_postgres_timeout_answers_the_last_good(svc: Service, db_url: str) -> None:
    good = (await svc.data("open-issues-kpi", refresh=True)).json()
    async with await psycopg.AsyncConnection.connect(db_url) as locker:
        await locker.execute("LOCK TABLE kpi_metrics_history IN ACCESS EXCLUSIVE MODE")
        body = (await svc.data("open-issues-kpi", refresh=True)).json()
        await locker.rollback()
    assert body["source"] == "postgres_timeout" and body["stale_reason"] == "postgres_timeout"
    assert body["data"] == good["data"] and body["stale"] is True


async def test_mock_when_there_is_no_last_good_answer(svc: Service, db_url: str) -> None:
    spec = {
        "title": "never resolved",
        "kind": "kpi",
        "mock_data": [{"value": -1}],
        "data_intent": {"metric_id": "active_issues_count", "time_range": "last_7d"},
    }
    assert (await svc.client.put("/v1/widgets/fresh-kpi", json=spec)).status_code in (200, 201)
    start, stop = await _postgres_error(db_url)
    await start()
    try:
        body = (await svc.data("fresh-kpi")).json()
    finally:
        await stop()
    assert body["source"] == "postgres_error" and body["data"] == [{"value": -1}]
    assert body["stale"] is False and body["stale_reason"] is None
    assert body["cache_hit"] is False and body["executed"] is False


async def test_mock_when_the_last_good_answer_is_too_old(
    svc: Service, clock: FakeClock, db_url: str
) -> None:
    good = (await svc.data("nba-taken-by-channel", refresh=True)).json()
    assert good["source"] == "postgres"
    clock.advance(2.1)  # TTL 1 s + stale-if-error 1 s are over
    start, stop = await _postgres_error(db_url)
    await start()
    try:
        body = (await svc.data("nba-taken-by-channel")).json()
    finally:
        await stop()
    assert body["source"] == "postgres_error" and body["stale"] is False
    spec = svc.res.registry.widget("nba-taken-by-channel")
    assert spec is not None and body["data"] == spec.mock_data


async def test_postgres_unavailable_answers_the_last_good(tmp_path: Path) -> None:
    from fakes.tcp_proxy import TcpProxy

    url = create_database()
    proxy = TcpProxy("127.0.0.1", 5432)
    await proxy.start()
    try:
        proxied = f"postgresql://postgres@127.0.0.1:{proxy.port}/{url.rpartition('/')[2]}"
        async with running_service(
            database_url=proxied,
            redis_url=REDIS_URL,
            cache_prefix=f"wdr-test:{uuid.uuid4().hex[:8]}:",
            data_dir=tmp_path,
            pg_connect_timeout_s=1.0,
        ) as s:
            good = (await s.data("open-issues-kpi", refresh=True)).json()
            await proxy.stop()
            body = (await s.data("open-issues-kpi", refresh=True)).json()
            assert body["source"] == "postgres_unavailable" and body["stale"] is True
            assert body["data"] == good["data"] and body["stale_reason"] == "postgres_unavailable"
            await proxy.start()
    finally:
        await proxy.stop()
        drop_database(url)


async def test_last_good_answer_on_each_databricks_failure_kind(
    sea: FakeSeaServer, tmp_path: Path
) -> None:
    url = create_database()
    try:
        async with running_service(
            database_url=url,
            redis_url=REDIS_URL,
            cache_prefix=f"wdr-test:{uuid.uuid4().hex[:8]}:",
            data_dir=tmp_path,
            **sea_settings(sea),
            databricks_query_timeout_s=1.5,
        ) as s:

            async def warehouse_ready() -> bool:  # the connector's first session is slow
                ready = (await s.client.get("/readyz")).json()
                return bool(ready["components"]["warehouse"]["ok"])

            await _until(warehouse_ready, timeout=60)
            good = (await s.data("alert-mttr-by-severity", refresh=True)).json()
            assert good["source"] == "databricks" and good["row_count"] > 0, good
            cases = [
                ("fail_message", "[TABLE_OR_VIEW_NOT_FOUND] boom", "databricks_error"),
                ("http_status", 401, "databricks_auth"),
                ("http_status", 503, "databricks_unavailable"),
                ("statement_delay_s", 5.0, "databricks_timeout"),
            ]
            for attr, value, kind in cases:
                sea.reset_failures()
                setattr(sea, attr, value)
                body = (await s.data("alert-mttr-by-severity", refresh=True)).json()
                assert body["source"] == kind and body["live_data_unavailable"] is True, body
                assert body["stale"] is True and body["stale_reason"] == kind
                assert body["data"] == good["data"] and body["resolved_at"] == good["resolved_at"]
                assert body["generated_sql"] == good["generated_sql"]
            sea.reset_failures()
            # never resolved before: the mock, flagged
            sea.http_status = 503
            body = (await s.data("devices-by-manufacturer")).json()
            assert body["source"] == "databricks_unavailable" and body["stale"] is False
            assert body["data"] == [{"manufacturer": "Acme", "value": 5000}]
    finally:
        sea.reset_failures()
        drop_database(url)


# ------------------------------------------------------------------ leases


async def test_a_failed_refresh_releases_the_lease(
    svc: Service, db_url: str, backend_calls: Counter[str]
) -> None:
    redis = svc.res.context.leases._client  # type: ignore[union-attr]
    prefix = svc.settings.cache_prefix
    start, stop = await _postgres_error(db_url)
    await start()
    try:
        first = (await svc.data("open-issues-kpi", refresh=True)).json()
        assert first["live_data_unavailable"] is True
        assert [k async for k in redis.scan_iter(f"{prefix}lease:*")] == []
        t0 = time.monotonic()
        second = (await svc.data("open-issues-kpi", refresh=True)).json()
        assert time.monotonic() - t0 < 2.0  # nobody waited for an orphaned lease
        assert second["live_data_unavailable"] is True
    finally:
        await stop()
    assert backend_calls["active_issues_count"] == 2  # each refresh ran (and failed) itself


async def test_a_miss_reads_the_widgets_entry_at_most_twice(svc: Service) -> None:
    """Once to decide, once after taking the lease (another instance may have filled it):
    counted as GETs on the real Redis."""
    client: Any = redis_client_of(svc.res.context.cache)
    real = client.get
    reads: Counter[str] = Counter()

    async def counting(name: str, *a: Any, **kw: Any) -> Any:
        reads[name] += 1
        return await real(name, *a, **kw)

    client.get = counting
    try:
        first = (await svc.data("cost-avoided-mtd", trace=True)).json()
        entry = [k for k in reads if not k.endswith("#failed")]
        assert len(entry) == 1  # the widget's one entry key
        await client.delete(entry[0])  # nothing cached: the next read is a miss
        await settled(svc.res.context.cache)  # (this process's copy of it is gone too)
        reads.clear()
        miss = (await svc.data("cost-avoided-mtd", trace=True)).json()
    finally:
        client.get = real
    assert first["live_data_unavailable"] is False
    steps = [(t["node"], t["outcome"]) for t in miss["trace"]]
    assert steps[:3] == [("route", "postgres"), ("cache_lookup", "miss"), ("postgres_query", "ok")]
    assert reads[entry[0]] == 2


# ------------------------------------------------------------------ refresh-ahead


@pytest.fixture
def ahead_clock() -> FakeClock:
    return FakeClock()


@pytest_asyncio.fixture(loop_scope="module")
async def ahead_svc(db_url: str, tmp_path: Path, ahead_clock: FakeClock) -> AsyncIterator[Service]:
    async with running_service(
        clock=ahead_clock,
        database_url=db_url,
        redis_url=REDIS_URL,
        cache_prefix=f"wdr-test:{uuid.uuid4().hex[:8]}:",
        data_dir=tmp_path / "data",
        config_dir=short_ttl_config(tmp_path, POLICIES),
    ) as s:
        yield s


async def test_refresh_ahead_keeps_a_read_entry_fresh_and_drops_an_unread_one(
    ahead_svc: Service, ahead_clock: FakeClock
) -> None:
    with counting_queries(ahead_svc) as calls:
        await _refresh_ahead(ahead_svc, ahead_clock, calls)


async def _refresh_ahead(svc: Service, clock: FakeClock, backend_calls: Counter[str]) -> None:
    """The service's clock is moved to just inside each entry's last backend duration
    before its expiry (where the refresher starts a refresh), never slept through: the
    refresher's ticks are real, so the test waits for the refresh it asks for."""
    first = (await svc.data("claims-in-progress-trend")).json()
    once = (await svc.data("critical-alerts-15m")).json()  # read once, then never again
    assert first["live_data_unavailable"] is False and once["live_data_unavailable"] is False
    refresher = svc.app.state.resolver.refresher
    seen = [first["resolved_at"]]
    for _ in range(3):
        body = (await svc.data("claims-in-progress-trend")).json()  # read from the cache
        assert body["cache_hit"] is True and body["stale"] is False, body
        assert body["resolved_at"] == seen[-1]
        (key,) = [k for k in refresher.tracked_keys() if ":claims-in-progress-trend:" in k]
        tracked = refresher._tracked[key]
        asked = refresher.started + 1
        # half a backend duration before it expires: the refresher's moment to start
        clock.now = tracked.expires_at - tracked.estimate_s / 2

        def refreshing(asked: int = asked) -> bool:
            return refresher.started >= asked

        await _until(refreshing, timeout=30)
        await _idle(svc)
        body = (await svc.data("claims-in-progress-trend")).json()
        assert body["cache_hit"] is True and body["stale"] is False, body  # nobody waited
        assert body["resolved_at"] > seen[-1]  # refreshed ahead of its expiry
        seen.append(body["resolved_at"])
    assert backend_calls["claims_in_progress_count"] == 4  # the first answer, 3 refreshes
    # the entry read once (never from the cache) is not kept warm: one query, not tracked
    assert backend_calls["critical_alerts_count_15min"] == 1
    keys = refresher.tracked_keys()
    assert not any(":critical-alerts-15m:" in k for k in keys)
    assert any(":claims-in-progress-trend:" in k for k in keys)
    # a key nobody reads for a whole TTL is dropped, not refreshed
    started = refresher.started
    clock.advance(2.5)
    await _until(lambda: refresher.tracked_keys() == [], timeout=30)
    assert refresher.started == started
