"""Issue 9: bounded in time whatever the network does. The service runs over the real
PostgreSQL behind a TCP proxy that delays every chunk or blackholes the link."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import pytest_asyncio

from adapters.pg_migrate import migrate
from adapters.pg_seed import seed
from adapters.postgres import PgGateway
from domain.config import load_catalog
from domain.failures import FailureKind, PostgresFailure
from domain.models import DataIntent
from fakes.tcp_proxy import TcpProxy
from tests.support.servers import (
    CONFIG_DIR,
    Service,
    create_database,
    drop_database,
    running_service,
)

# What the settings below promise (README "Time bounds"): a deadline plus slack for the
# degraded answer. The assertions are generous: they catch "no answer", not slowness.
DEADLINE_S = 2.0
BOUND_S = 3 * DEADLINE_S


@pytest.fixture
def db_url() -> Iterator[str]:
    url = create_database()
    yield url
    drop_database(url)


@pytest.fixture
def proxy(db_url: str) -> Iterator[TcpProxy]:
    target = urlsplit(db_url)
    with TcpProxy(target.hostname or "127.0.0.1", target.port or 5432) as p:
        yield p


@pytest_asyncio.fixture
async def svc(db_url: str, proxy: TcpProxy, tmp_path: Path) -> AsyncIterator[Service]:
    async with running_service(
        database_url=proxy.url_for(db_url),
        data_dir=tmp_path,
        pg_statement_timeout_ms=1000,
        pg_deadline_s=DEADLINE_S,
        pg_connect_timeout_s=1.0,
        registry_ping_interval_s=0.5,
        registry_ping_timeout_s=1.0,
        registry_backoff_max_s=0.5,
        readyz_probe_timeout_s=1.0,
        generation_log_deadline_s=1.0,
    ) as s:
        yield s


async def _timed(call: asyncio.Future | object) -> tuple[object, float]:  # type: ignore[type-arg]
    started = time.monotonic()
    out: object = await asyncio.wait_for(call, BOUND_S * 2)  # type: ignore[arg-type]
    return out, time.monotonic() - started


async def _until(predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.2)


async def test_a_slow_postgres_link_degrades_within_the_bound(
    svc: Service, proxy: TcpProxy
) -> None:
    assert (await svc.data("open-issues-kpi", refresh=True)).json()["source"] == "postgres"
    proxy.latency_s = 2.0  # every chunk held back 2 s, both ways
    r, elapsed = await _timed(svc.data("open-issues-kpi", refresh=True))
    body = r.json()  # type: ignore[attr-defined]
    assert r.status_code == 200 and body["live_data_unavailable"] is True  # type: ignore[attr-defined]
    assert body["source"] in ("postgres_timeout", "postgres_unavailable"), body
    assert elapsed < BOUND_S
    proxy.latency_s = 0.0


async def test_a_blackholed_link_degrades_reports_and_recovers(
    svc: Service, proxy: TcpProxy
) -> None:
    assert (await svc.data("open-issues-kpi", refresh=True)).json()["source"] == "postgres"
    assert svc.res.registry.listening
    proxy.blackhole = True
    r, elapsed = await _timed(svc.data("open-issues-kpi", refresh=True))
    body = r.json()  # type: ignore[attr-defined]
    assert body["live_data_unavailable"] is True and elapsed < BOUND_S, body
    assert body["source"] in ("postgres_timeout", "postgres_unavailable")
    # a write is refused within the bound too (503), not left hanging
    spec = {
        "title": "t",
        "kind": "kpi",
        "data_intent": {"metric_id": "active_issues_count"},
        "mock_data": [{"value": 1}],
    }
    w, elapsed = await _timed(svc.client.put("/v1/widgets/during-blackhole", json=spec))
    assert w.status_code == 503 and elapsed < BOUND_S  # type: ignore[attr-defined]

    async def readyz_says_down() -> bool:
        ready, took = await _timed(svc.client.get("/readyz"))
        assert took < BOUND_S
        doc = ready.json()  # type: ignore[attr-defined]
        c = doc["components"]
        return doc["status"] == "degraded" and not c["postgres"]["ok"] and c["registry"]["stale"]

    await _until(readyz_says_down, timeout=10)  # the dead LISTEN link is noticed
    assert svc.res.registry.listener.dead_links >= 1

    proxy.blackhole = False
    proxy.stop()  # connections that lost bytes are cut, as a recovering network does
    proxy.start()

    async def live_again() -> bool:
        body = (await svc.data("open-issues-kpi", refresh=True)).json()
        ready = (await svc.client.get("/readyz")).json()
        return body["source"] == "postgres" and ready["status"] == "ok"

    await _until(live_again, timeout=15)
    assert not (await svc.client.get("/readyz")).json()["components"]["registry"]["stale"]


async def test_a_deadline_cancels_the_statement_on_the_server(db_url: str, proxy: TcpProxy) -> None:
    await migrate(db_url)
    await seed(db_url, CONFIG_DIR, history_days=2)
    metric = load_catalog(CONFIG_DIR / "metrics.yaml")["active_issues_count"]
    gateway = PgGateway(
        proxy.url_for(db_url), statement_timeout_ms=60_000, deadline_s=1.0, min_size=1
    )
    await gateway.open()
    try:
        await gateway.run_metric(metric, DataIntent(metric_id=metric.name), now=time.time())
        proxy.latency_s = 1.5  # the answer cannot come back within the 1 s deadline
        with pytest.raises(PostgresFailure) as err:
            await gateway.run_metric(metric, DataIntent(metric_id=metric.name), now=time.time())
        assert err.value.kind is FailureKind.postgres_timeout and "deadline" in err.value.detail

        async def still_running() -> list[tuple[str, str]]:
            async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
                cur = await conn.execute(
                    "SELECT state, query FROM pg_stat_activity WHERE application_name = 'resolver'"
                    " AND state = 'active' AND query LIKE '%kpi_metrics_history%'"
                )
                return [(str(a), str(b)) for a, b in await cur.fetchall()]

        async def cancelled() -> bool:
            return not await still_running()

        await _until(cancelled, timeout=15)  # cancelled (or closed), never left running
    finally:
        proxy.latency_s = 0.0
        await gateway.close()


async def test_a_client_going_away_does_not_cancel_a_shared_resolution(
    svc: Service, proxy: TcpProxy
) -> None:
    proxy.latency_s = 0.1  # keep the resolution in flight for a while (within the deadline)
    leader = asyncio.ensure_future(svc.data("open-issues-kpi", refresh=True))
    await asyncio.sleep(0.2)
    follower = asyncio.ensure_future(svc.data("open-issues-kpi", refresh=True))
    await asyncio.sleep(0.1)
    leader.cancel()  # the first viewer closes the tab
    body = (await asyncio.wait_for(follower, BOUND_S * 2)).json()
    assert body["source"] == "postgres" and body["row_count"] > 0, body
    proxy.latency_s = 0.0
