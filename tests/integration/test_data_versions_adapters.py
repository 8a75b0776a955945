"""Data versions from each source: the Statement Execution fake through the real connector
(`DESCRIBE HISTORY ... LIMIT 1`), the embedded DuckDB lakehouse, and PostgreSQL's
kpi_metrics_history trigger (migration 0040) with its NOTIFY, over the real server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from adapters.data_versions import PgChangeListener, WarehouseDataVersions
from adapters.lakehouse import CLAIM_EVENTS, DEVICES, new_claim_events
from adapters.pg_migrate import migrate
from tests.support.servers import sea_lakehouse

NOW = datetime.now(UTC) - timedelta(seconds=10)
COUNT_FILED = f"SELECT count(*) AS n FROM {CLAIM_EVENTS} WHERE event_type = 'filed'"


@pytest.fixture
def sea() -> Iterator[Any]:
    with sea_lakehouse() as srv:
        yield srv


async def test_the_fake_answers_describe_history_with_a_version_that_moves(sea: Any) -> None:
    from adapters.databricks import DatabricksWarehouse
    from tests.support.servers import sea_settings

    s = sea_settings(sea)
    wh = DatabricksWarehouse(
        server_hostname=s["databricks_host"],
        http_path=s["databricks_http_path"],
        access_token=s["databricks_token"],
        transport="sea",
    )
    try:
        versions = WarehouseDataVersions(wh)
        assert await versions.probe(CLAIM_EVENTS) == 0
        history = await wh.execute(f"DESCRIBE HISTORY {CLAIM_EVENTS} LIMIT 1", max_rows=5)
        assert [c.name for c in history.columns][:5] == [
            "version", "timestamp", "userId", "userName", "operation"
        ]  # fmt: skip
        before = (await wh.execute(COUNT_FILED, max_rows=1)).rows[0]["n"]
        assert sea.append(CLAIM_EVENTS, new_claim_events(3, now=NOW)) == 1
        assert await versions.probe(CLAIM_EVENTS) == 1
        assert await versions.probe(DEVICES) == 0  # only the table appended to moves
        assert (await wh.execute(COUNT_FILED, max_rows=1)).rows[0]["n"] == before + 3
        # probes are told apart from data statements
        assert [t for t in sea.data_statements if "HISTORY" in t.upper()] == []
        assert len(sea.statement_texts) - len(sea.data_statements) == 4
    finally:
        await wh.aclose()


async def test_a_failing_probe_has_no_version(sea: Any) -> None:
    from adapters.databricks import DatabricksWarehouse
    from tests.support.servers import sea_settings

    s = sea_settings(sea)
    wh = DatabricksWarehouse(
        server_hostname=s["databricks_host"],
        http_path=s["databricks_http_path"],
        access_token=s["databricks_token"],
        transport="sea",
        retry_attempts=1,
    )
    try:
        sea.fail_message = "[TABLE_OR_VIEW_NOT_FOUND] gone"
        assert await WarehouseDataVersions(wh).probe(CLAIM_EVENTS) is None
    finally:
        await wh.aclose()


async def test_the_embedded_lakehouse_versions_its_appends() -> None:
    from adapters.duckdb_warehouse import DuckDBWarehouse

    duck = await asyncio.to_thread(DuckDBWarehouse, now=NOW, appendable=True)
    try:
        versions = WarehouseDataVersions(duck)
        assert await versions.probe(CLAIM_EVENTS) == 0
        assert await versions.probe("main.nope.t") is None
        before = (await duck.execute(COUNT_FILED, max_rows=1)).rows[0]["n"]
        assert duck.append(CLAIM_EVENTS, new_claim_events(2, now=NOW)) == 1
        assert await versions.probe(CLAIM_EVENTS) == 1
        assert (await duck.execute(COUNT_FILED, max_rows=1)).rows[0]["n"] == before + 2
        assert len(duck.executed_statements) == 4  # probes ran no statement
    finally:
        duck.close()


async def test_kpi_history_changes_bump_the_metric_version_and_notify(fresh_pg_url: str) -> None:
    await migrate(fresh_pg_url)
    heard: list[tuple[str, int]] = []
    got = asyncio.Event()

    def on_change(metric: str, version: int) -> None:
        heard.append((metric, version))
        got.set()

    listener = PgChangeListener(fresh_pg_url, on_change)
    listener.start()
    pool = AsyncConnectionPool(fresh_pg_url, min_size=1, max_size=2, open=False)
    await pool.open()
    try:
        versions = WarehouseDataVersions(None, pool)
        assert await versions.probe("postgres:nba_taken_pct") == 0  # never changed
        await asyncio.wait_for(listener.listening.wait(), 30)
        async with await psycopg.AsyncConnection.connect(fresh_pg_url, autocommit=True) as conn:
            await conn.execute(
                "INSERT INTO kpi_metrics_history (metric_name, recorded_at, value)"
                " VALUES ('nba_taken_pct', now(), 1), ('nba_taken_pct', now(), 2)"
            )
        await asyncio.wait_for(got.wait(), 30)
        assert heard == [("nba_taken_pct", 1)]  # one change per statement and metric
        assert await versions.probe("postgres:nba_taken_pct") == 1
        assert await versions.probe("postgres:cost_avoided_mtd") == 0
    finally:
        await listener.stop()
        await pool.close()
