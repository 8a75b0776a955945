"""PgGateway and PgGenerationLog over the real PostgreSQL server (seeded demo data)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

import adapters.postgres as pg_module
from adapters.pg_connections import _readable
from adapters.pg_generation_log import PgGenerationLog
from adapters.pg_migrate import migrate
from adapters.pg_seed import load_catalog, load_widgets, seed
from adapters.postgres import PgGateway, PlannedQuery, postgres_problems
from domain.failures import FailureKind, InvalidIntent, PostgresFailure
from domain.models import DataIntent, Filter, MetricDef, MetricDefinition
from fakes.tcp_proxy import TcpProxy
from tests.support.clocks import until

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
CATALOG = load_catalog(CONFIG_DIR / "metrics.yaml")
WIDGETS = load_widgets(CONFIG_DIR / "widgets.yaml")
HOSTILE = "x' OR 1=1 --"


@pytest.fixture(scope="module")
def seeded_url(pg_url: str) -> str:
    asyncio.run(migrate(pg_url))
    asyncio.run(seed(pg_url, CONFIG_DIR))
    return pg_url


@pytest.fixture
async def gateway(seeded_url: str) -> AsyncIterator[PgGateway]:
    gw = PgGateway(seeded_url)
    await gw.open()
    yield gw
    await gw.close()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def proxy(seeded_url: str) -> Iterator[TcpProxy]:
    host_port = seeded_url.split("@", 1)[1].split("/", 1)[0]
    host, _, port = host_port.partition(":")
    p = TcpProxy(host, int(port or 5432))
    p.start()
    yield p
    p.close()


def intent(metric_id: str, **kw: Any) -> DataIntent:
    return DataIntent(metric_id=metric_id, **kw)


async def run(gw: PgGateway, di: DataIntent) -> Any:
    return await gw.run_metric(CATALOG[di.metric_id], di, now=time.time())


def fetch(url: str, query: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ demo widgets


PG_METRICS = {m for m, d in CATALOG.items() if d.definition.table == "kpi_metrics_history"}
POSTGRES_WIDGETS = sorted(w for w, s in WIDGETS.items() if s.data_intent.metric_id in PG_METRICS)


def test_every_postgres_metric_in_the_catalog_is_servable() -> None:
    assert len(PG_METRICS) >= 5 and len(POSTGRES_WIDGETS) >= 5
    for name in PG_METRICS:
        assert postgres_problems(CATALOG[name]) == [], name


@pytest.mark.parametrize("widget_id", POSTGRES_WIDGETS)
async def test_demo_widget_returns_rows(gateway: PgGateway, widget_id: str) -> None:
    di = WIDGETS[widget_id].data_intent
    result = await run(gateway, di)
    expected = [*di.dimensions, *(["bucket"] if di.grain != "none" else []), "value"]
    assert [c.name for c in result.columns] == expected
    types = {c.name: c.type for c in result.columns}
    assert types["value"] == "number"
    assert all(types[d] == "string" for d in di.dimensions)
    if di.grain != "none":
        assert types["bucket"] == "timestamp"
    assert result.rows, widget_id
    for row in result.rows:
        assert list(row) == expected
        assert isinstance(row["value"], (int, float))
    assert result.sql and "%(metric)s" in result.sql
    assert not result.truncated


async def test_last_is_the_sum_of_each_series_latest_point(
    gateway: PgGateway, seeded_url: str
) -> None:
    now = time.time()
    di = intent("active_issues_count", dimensions=["severity"], time_range="last_24h")
    result = await gateway.run_metric(CATALOG["active_issues_count"], di, now=now)
    expected = fetch(
        seeded_url,
        """
        SELECT h.dimensions->>'severity', sum(h.value)
        FROM kpi_metrics_history h
        JOIN (SELECT dimensions, max(recorded_at) AS at FROM kpi_metrics_history
              WHERE metric_name = 'active_issues_count'
                AND recorded_at >= to_timestamp(%(now)s) - interval '24 hours'
                AND recorded_at < to_timestamp(%(now)s)
              GROUP BY dimensions) last
          ON last.dimensions = h.dimensions AND last.at = h.recorded_at
        WHERE h.metric_name = 'active_issues_count'
        GROUP BY 1
        """,
        {"now": now},
    )
    assert {r["severity"]: r["value"] for r in result.rows} == dict(expected)
    values = [r["value"] for r in result.rows]
    assert values == sorted(values, reverse=True)  # categories: largest first


async def test_sum_over_mtd_matches_the_table(gateway: PgGateway, seeded_url: str) -> None:
    now = time.time()
    result = await gateway.run_metric(
        CATALOG["cost_avoided_mtd"], intent("cost_avoided_mtd", time_range="mtd"), now=now
    )
    (expected,) = fetch(
        seeded_url,
        "SELECT sum(value) FROM kpi_metrics_history WHERE metric_name = 'cost_avoided_mtd'"
        " AND recorded_at >= date_trunc('month', to_timestamp(%(now)s) AT TIME ZONE 'UTC')"
        " AT TIME ZONE 'UTC' AND recorded_at < to_timestamp(%(now)s)",
        {"now": now},
    )
    assert result.rows == [{"value": pytest.approx(expected[0])}]


async def test_hourly_buckets_are_ordered_time_series(gateway: PgGateway) -> None:
    di = intent(
        "critical_alerts_count_15min", dimensions=["service"], time_range="last_24h", grain="hour"
    )
    rows = (await run(gateway, di)).rows
    buckets = sorted({r["bucket"] for r in rows})
    assert 24 <= len(buckets) <= 25
    assert all(b.endswith(":00:00+00:00") for b in buckets)
    assert len(rows) == 4 * len(buckets)
    assert [r["bucket"] for r in rows] == sorted(r["bucket"] for r in rows)


async def test_recent_data_present_for_short_ranges(gateway: PgGateway) -> None:
    di = intent("critical_alerts_count_15min", time_range="last_15m", dimensions=["service"])
    assert len((await run(gateway, di)).rows) == 4


# ------------------------------------------------------------------------------ parameters


async def test_filters_restrict_rows(gateway: PgGateway) -> None:
    di = intent(
        "active_issues_count",
        dimensions=["severity"],
        time_range="last_24h",
        filters=[Filter(column="severity", op="in", value=["critical", "high"])],
    )
    assert {r["severity"] for r in (await run(gateway, di)).rows} == {"critical", "high"}

    di = intent(
        "active_issues_count",
        dimensions=["team"],
        time_range="last_24h",
        filters=[
            Filter(column="team", op="!=", value="platform"),
            Filter(column="severity", op="not_in", value=["low", "medium"]),
        ],
    )
    assert {r["team"] for r in (await run(gateway, di)).rows} == {"payments", "mobile", "data"}


async def test_hostile_filter_values_are_just_values(gateway: PgGateway, seeded_url: str) -> None:
    before = fetch(seeded_url, "SELECT count(*) FROM kpi_metrics_history")
    di = intent(
        "active_issues_count",
        dimensions=["team"],
        time_range="all",
        filters=[Filter(column="team", op="=", value=HOSTILE)],
    )
    result = await run(gateway, di)
    assert result.rows == []
    assert HOSTILE not in (result.sql or "")
    di = intent(
        "claims_in_progress_count",
        time_range="last_1h",
        filters=[Filter(column="region", op="in", value=[HOSTILE, "'; DROP TABLE widgets; --"])],
    )
    assert (await run(gateway, di)).rows == [{"value": None}]
    assert fetch(seeded_url, "SELECT count(*) FROM kpi_metrics_history") == before
    assert fetch(seeded_url, "SELECT count(*) FROM widgets")[0][0] > 0


async def test_limit_and_truncation(seeded_url: str) -> None:
    gw = PgGateway(seeded_url, max_rows=3)
    await gw.open()
    try:
        di = intent("active_issues_count", dimensions=["team", "severity"], time_range="last_24h")
        result = await run(gw, di)
        assert len(result.rows) == 3 and result.truncated
        limited = await run(gw, di.model_copy(update={"limit": 2}))
        assert len(limited.rows) == 2 and not limited.truncated
    finally:
        await gw.close()


async def test_limited_time_series_keeps_the_newest_buckets(seeded_url: str) -> None:
    """A bucketed result cut by the intent's limit or by max_rows is the tail of the full
    ascending series (before: its head, i.e. the oldest buckets)."""
    series = intent(
        "active_issues_count", dimensions=["team", "severity"], time_range="last_7d", grain="hour"
    )
    now = time.time()
    metric = CATALOG["active_issues_count"]
    full_gw, small_gw = PgGateway(seeded_url), PgGateway(seeded_url, max_rows=50)
    await full_gw.open()
    await small_gw.open()
    try:
        full = await full_gw.run_metric(metric, series, now=now)
        assert not full.truncated and len(full.rows) > 100
        keys = [(r["bucket"], r["team"], r["severity"]) for r in full.rows]
        assert keys == sorted(keys)

        limited = await full_gw.run_metric(metric, series.model_copy(update={"limit": 30}), now=now)
        assert limited.rows == full.rows[-30:] and not limited.truncated

        capped = await small_gw.run_metric(metric, series, now=now)
        assert capped.rows == full.rows[-50:] and capped.truncated
        assert capped.rows[-1]["bucket"] == full.rows[-1]["bucket"]
        assert capped.rows[0]["bucket"] > full.rows[0]["bucket"]
    finally:
        await full_gw.close()
        await small_gw.close()


async def test_bogus_dimension_filter_or_operator_is_invalid_intent(gateway: PgGateway) -> None:
    bad = [
        intent("active_issues_count", dimensions=["region"]),
        intent("active_issues_count", dimensions=["bogus_dim"]),
        intent("nba_taken_pct", filters=[Filter(column="team", op="=", value="data")]),
        intent("nba_taken_pct", filters=[Filter(column="channel", op=">", value="a")]),
    ]
    for di in bad:
        with pytest.raises(InvalidIntent):
            await run(gateway, di)
        with pytest.raises(InvalidIntent):
            gateway.render_sql(CATALOG[di.metric_id], di, now=time.time())
    with pytest.raises(InvalidIntent, match="not 'nba_taken_pct'"):
        await gateway.run_metric(
            CATALOG["nba_taken_pct"], intent("cost_avoided_mtd"), now=time.time()
        )


def _metric(name: str, **definition: Any) -> MetricDef:
    return MetricDef(
        name=name,
        description="defined in config only",
        unit="x",
        owner="nobody",
        definition=MetricDefinition(**definition),
    )


@pytest.mark.parametrize(
    "definition",
    [
        {"table": "some_other_table", "aggregation": "sum"},
        {"table": "kpi_metrics_history"},  # no aggregation
        {"table": "kpi_metrics_history", "aggregation": "sum", "dimensions": ["x') OR ('1"]},
    ],
)
async def test_unmapped_metric(gateway: PgGateway, definition: dict[str, Any]) -> None:
    metric = _metric("orphan_metric", **definition)
    assert postgres_problems(metric) and not gateway.has_query(metric)
    assert gateway.has_query(CATALOG["nba_taken_pct"])
    with pytest.raises(PostgresFailure) as err:
        await gateway.run_metric(metric, intent("orphan_metric"), now=time.time())
    assert err.value.kind is FailureKind.postgres_unmapped


async def test_a_metric_defined_only_in_config_runs(gateway: PgGateway) -> None:
    """A new PostgreSQL metric needs its definition (metrics.yaml) and routing, no code:
    its dimensions are the definition's."""
    metric = _metric(
        "nba_taken_pct_by_region",
        table="kpi_metrics_history",
        aggregation="avg",
        dimensions=["channel", "region"],
    )
    assert postgres_problems(metric) == []
    di = intent(
        metric.name, dimensions=["channel"], filters=[Filter(column="region", op="=", value="west")]
    )
    result = await gateway.run_metric(metric, di, now=time.time())
    assert result.rows == [] and [c.name for c in result.columns] == ["channel", "value"]
    assert result.sql is not None and "dimensions->>'region'" in result.sql


def test_render_sql_shows_placeholders_only(gateway: PgGateway) -> None:
    di = intent(
        "claims_in_progress_count",
        dimensions=["region"],
        grain="day",
        limit=7,
        filters=[Filter(column="region", op="=", value="west")],
    )
    sql = gateway.render_sql(CATALOG["claims_in_progress_count"], di, now=time.time())
    for placeholder in ("%(metric)s", "%(start)s", "%(end)s", "%(grain)s", "%(f0)s", "%(limit)s"):
        assert placeholder in sql
    assert "west" not in sql and "claims_in_progress_count" not in sql and "'day'" not in sql


# ------------------------------------------------------------------------------ execution


async def test_statement_timeout(seeded_url: str) -> None:
    gw = PgGateway(seeded_url, statement_timeout_ms=1)
    await gw.open()
    try:
        heavy = intent(
            "active_issues_count", dimensions=["team", "severity"], time_range="all", grain="minute"
        )
        with pytest.raises(PostgresFailure) as err:
            await run(gw, heavy)
        assert err.value.kind is FailureKind.postgres_timeout
    finally:
        await gw.close()


async def test_transaction_is_read_only(
    gateway: PgGateway, seeded_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Swap the planner for one emitting a write, to prove the server refuses it.
    def write_plan(*_a: Any, **_k: Any) -> PlannedQuery:
        return PlannedQuery(
            sql="INSERT INTO widgets (id, spec) VALUES (%(metric)s, '{}') RETURNING id",
            params={"metric": "sneaky-write"},
            truncate_at=None,
        )

    monkeypatch.setattr(pg_module, "plan_query", write_plan)
    with pytest.raises(PostgresFailure) as err:
        await run(gateway, intent("nba_taken_pct"))
    assert err.value.kind is FailureKind.postgres_error
    assert isinstance(err.value.__cause__, psycopg.errors.ReadOnlySqlTransaction)
    assert fetch(seeded_url, "SELECT count(*) FROM widgets WHERE id = 'sneaky-write'") == [(0,)]


async def test_connection_refused_is_unavailable(closed_port: int) -> None:
    gw = PgGateway(f"postgresql://postgres@127.0.0.1:{closed_port}/postgres", pool_timeout_s=0.5)
    await gw.open()  # does not fail although nothing listens
    try:
        with pytest.raises(PostgresFailure) as err:
            await run(gw, intent("nba_taken_pct"))
        assert err.value.kind is FailureKind.postgres_unavailable
        assert await gw.ping() is False
    finally:
        await gw.close()


async def _eventually_ok(gw: PgGateway, di: DataIntent, deadline_s: float) -> Any:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return await run(gw, di)
        except PostgresFailure as exc:
            assert exc.kind is FailureKind.postgres_unavailable
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_outage_then_recovery_through_proxy(proxy: TcpProxy, seeded_url: str) -> None:
    gw = PgGateway(proxy.url_for(seeded_url), min_size=2, pool_timeout_s=0.5)
    await gw.open()
    di = intent("nba_taken_pct", dimensions=["channel"])
    try:
        assert (await _eventually_ok(gw, di, 10)).rows
        assert await gw.ping()

        proxy.stop()  # listener closed, live connections cut
        for _ in range(3):
            with pytest.raises(PostgresFailure) as err:
                await run(gw, di)
            assert err.value.kind is FailureKind.postgres_unavailable
        assert await gw.ping() is False

        proxy.start()  # same port
        assert (await _eventually_ok(gw, di, 20)).rows
        assert await gw.ping()
    finally:
        await gw.close()


async def test_a_healthy_idle_connection_is_handed_out_without_a_round_trip_a_terminated_one_is_replaced(
    seeded_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[int] = []  # the pool's own check (an empty query): which connections had it
    empty_query = AsyncConnectionPool.check_connection

    async def counted(conn: psycopg.AsyncConnection[Any]) -> None:
        checked.append(conn.info.backend_pid)
        await empty_query(conn)

    monkeypatch.setattr(AsyncConnectionPool, "check_connection", staticmethod(counted))
    gw = PgGateway(seeded_url, min_size=1, max_size=1)
    await gw.open()
    try:
        async with gw.pool.connection() as conn:
            pid = conn.info.backend_pid
        async with gw.pool.connection() as again:
            assert again.info.backend_pid == pid
        assert checked == []  # idle, nothing to read: no round trip
        fetch(seeded_url, "SELECT pg_terminate_backend(%(pid)s)", {"pid": pid})
        await until(lambda: _readable(conn.pgconn.socket))  # the server's goodbye
        async with gw.pool.connection() as fresh:
            assert fresh.info.backend_pid != pid
            assert await (await fresh.execute("SELECT 1")).fetchone() == (1,)
        assert checked == [pid]  # the terminated one had the real check, failed it, was replaced
    finally:
        await gw.close()


# ------------------------------------------------------------------------------ generation log


async def test_generation_log_writes_a_row(gateway: PgGateway, seeded_url: str) -> None:
    log = PgGenerationLog(gateway.pool)
    await log.write(
        {
            "widget_id": "top-claimed-models",
            "metric_id": "claims_insights",
            "question": "Which models?",
            "model_id": "anthropic.claude",
            "prompt_hash": "abc123",
            "generated_sql": "SELECT 1",
            "safety_allowed": False,
            "safety_rule": "forbidden_statement",
            "latency_ms": 812.5,
            "input_tokens": 1200,
            "output_tokens": 80,
            "failure_kind": FailureKind.safety_violation,
            "generator": "llm",
            "unexpected_key": "ignored",
        }
    )
    rows = fetch(
        seeded_url,
        "SELECT widget_id, metric_id, safety_allowed, safety_rule, latency_ms, input_tokens,"
        " failure_kind, generator, created_at IS NOT NULL FROM sql_generation_log"
        " WHERE prompt_hash = 'abc123'",
    )
    assert rows == [
        (
            "top-claimed-models",
            "claims_insights",
            False,
            "forbidden_statement",
            812.5,
            1200,
            "safety_violation",
            "llm",
            True,
        )
    ]
    await log.write({"metric_id": "claims_insights", "prompt_hash": "minimal"})
    assert fetch(
        seeded_url,
        "SELECT widget_id, safety_allowed FROM sql_generation_log WHERE prompt_hash = 'minimal'",
    ) == [(None, None)]


async def test_generation_log_keeps_the_way_and_replays_model_sql_only(
    gateway: PgGateway, seeded_url: str
) -> None:
    log = PgGenerationLog(gateway.pool)
    key = "g-test-way-" + str(time.time_ns())
    model = {"approved_key": key, "safety_allowed": True, "metric_id": "claims_insights"}
    await log.write(
        model | {"generated_sql": "SELECT 1 LIMIT 1", "way": "model_written_unverified"}
    )
    intent = {"metric_id": "claims_filed_count", "dimensions": ["region"]}
    await log.write(
        model
        | {"generated_sql": "SELECT 2 LIMIT 1", "way": "compiled_from_metric", "intent": intent}
    )
    rows = fetch(
        seeded_url,
        f"SELECT way, grounded_intent FROM sql_generation_log WHERE approved_key = '{key}' "
        "ORDER BY id",
    )
    assert rows == [("model_written_unverified", None), ("compiled_from_metric", intent)]
    # the compiled SQL has fixed time bounds: the model-down fallback replays model SQL only
    assert await log.last_approved(approved_key=key) == "SELECT 1 LIMIT 1"


async def test_generation_log_never_raises_when_pg_is_down(
    closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    gw = PgGateway(f"postgresql://postgres@127.0.0.1:{closed_port}/postgres")
    await gw.open()
    try:
        log = PgGenerationLog(gw.pool, timeout_s=0.3)
        with caplog.at_level(logging.WARNING, logger="adapters.pg_generation_log"):
            await log.write({"metric_id": "claims_insights", "generated_sql": "SELECT 1"})
        assert any("sql_generation_log write dropped" in r.getMessage() for r in caplog.records)
    finally:
        await gw.close()


async def test_sql_error_is_postgres_error_naming_the_cause(fresh_pg_url: str) -> None:
    gw = PgGateway(fresh_pg_url)  # database without migrations: the table does not exist
    await gw.open()
    try:
        with pytest.raises(PostgresFailure) as err:
            await run(gw, intent("nba_taken_pct"))
        assert err.value.kind is FailureKind.postgres_error
        assert "kpi_metrics_history" in err.value.detail and "42P01" in err.value.detail
    finally:
        await gw.close()
