"""The embedded DuckDB warehouse and the demo lakehouse behind it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from adapters.duckdb_warehouse import DuckDBWarehouse
from adapters.embedded_rule import UNGATED
from adapters.lakehouse import TABLES, build_lakehouse, duckdb_type, table_schemas
from domain.config import load_config
from domain.failures import FailureKind, WarehouseFailure
from domain.models import DataIntent, MetricDef, WidgetSpec
from metricsql import compile_intent

CONFIG = Path(__file__).resolve().parents[2] / "config"
FIXED_NOW = datetime(2026, 11, 26, 17, 45, 24, 654321, tzinfo=UTC)


def _metrics() -> dict[str, MetricDef]:
    return load_config(CONFIG).metrics


def _databricks_widgets() -> dict[str, WidgetSpec]:
    cfg = load_config(CONFIG)
    return {
        wid: w
        for wid, w in cfg.widgets.items()
        if cfg.routing[w.data_intent.metric_id].backend == "databricks"
    }


METRICS = _metrics()
WIDGETS = _databricks_widgets()


@pytest.fixture(scope="module")
def warehouse() -> Iterator[DuckDBWarehouse]:
    """Built for the real current time, as the service does."""
    wh = DuckDBWarehouse()
    yield wh
    wh.close()


def test_demo_has_databricks_widgets() -> None:
    assert len(WIDGETS) >= 6


@pytest.mark.parametrize("widget_id", sorted(WIDGETS))
async def test_every_databricks_widget_returns_rows(
    warehouse: DuckDBWarehouse, widget_id: str
) -> None:
    intent = WIDGETS[widget_id].data_intent
    sql = compile_intent(METRICS[intent.metric_id], intent, now=datetime.now(UTC))
    result = await warehouse.execute(sql, max_rows=1000)
    expected = [*intent.dimensions, *(["bucket"] if intent.grain != "none" else []), "value"]
    assert [c.name for c in result.columns] == expected
    assert len(result.rows) > 0
    assert all(list(row) == expected for row in result.rows)
    assert all(row["value"] is not None for row in result.rows)
    assert result.sql == sql
    assert not result.truncated
    types = {c.name: c.type for c in result.columns}
    assert types["value"] in ("integer", "number")
    if "bucket" in types:
        assert types["bucket"] == "timestamp"
        assert all(row["bucket"].endswith("+00:00") for row in result.rows)


async def test_three_part_names_resolve(warehouse: DuckDBWarehouse) -> None:
    sql = (
        "SELECT (SELECT count(*) FROM main.claims.claim_events) AS events, "
        "(SELECT count(*) FROM main.claims.devices) AS devices, "
        "(SELECT count(*) FROM main.ops.alerts) AS alerts"
    )
    (row,) = (await warehouse.execute(sql, max_rows=1)).rows
    assert row["events"] >= 50_000
    assert row["devices"] == 5000
    assert row["alerts"] == 10_000


def test_lakehouse_schema_matches_tables() -> None:
    con = duckdb.connect()
    build_lakehouse(con, now=FIXED_NOW)
    for name, cols in TABLES.items():
        described = con.execute(f"DESCRIBE {name}").fetchall()
        actual = [(r[0], r[1]) for r in described]
        expected = [
            (c, duckdb_type(t).replace("TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE")) for c, t in cols
        ]
        assert actual == expected, name
    assert [s.name for s in table_schemas()] == list(TABLES)
    con.close()


def test_lakehouse_data_is_relative_to_now_and_consistent() -> None:
    con = duckdb.connect()
    build_lakehouse(con, now=FIXED_NOW)
    q = con.execute
    first, last = (
        q("SELECT min(event_ts), max(event_ts) FROM main.claims.claim_events").fetchone() or ()
    )
    assert FIXED_NOW - timedelta(days=181) < first and last < FIXED_NOW
    for table, col in (("main.claims.claim_events", "event_ts"), ("main.ops.alerts", "created_at")):
        (recent,) = (
            q(
                f"SELECT count(*) FROM {table} WHERE {col} >= $n - INTERVAL 1 DAY", {"n": FIXED_NOW}
            ).fetchone()
            or ()
        )
        assert recent > 0, table
    # every claim has exactly one filed event, and nothing happens to a claim before it
    assert q(
        "SELECT count(*) FROM (SELECT claim_id, min_by(event_type, event_ts) AS first_type, "
        "count_if(event_type = 'filed') AS filed FROM main.claims.claim_events GROUP BY claim_id) "
        "WHERE first_type <> 'filed' OR filed <> 1"
    ).fetchone() == (0,)
    assert q(
        "SELECT count(*) FROM main.claims.claim_events "
        "WHERE (amount IS NULL) <> (event_type NOT IN ('filed', 'paid'))"
    ).fetchone() == (0,)
    assert q(
        "SELECT count(*) FROM main.claims.claim_events e ANTI JOIN main.claims.devices d USING (device_id)"
    ).fetchone() == (0,)
    unresolved, early = (
        q(
            "SELECT count_if(resolved_at IS NULL), count_if(resolved_at < created_at) FROM main.ops.alerts"
        ).fetchone()
        or ()
    )
    assert unresolved > 0 and early == 0
    damage = q(
        "SELECT DISTINCT json_extract_string(attributes, '$.damage') FROM main.claims.claim_events"
    ).fetchall()
    assert {d for (d,) in damage} == {"screen", "battery", "water", "theft", "other"}
    con.close()


def test_checksums_are_stable_and_depend_on_now() -> None:
    a, b = DuckDBWarehouse(now=FIXED_NOW), DuckDBWarehouse(now=FIXED_NOW)
    c = DuckDBWarehouse(now=FIXED_NOW + timedelta(hours=1))
    try:
        sums = a.table_checksums()
        assert set(sums) == set(TABLES)
        assert sums == b.table_checksums() == a.table_checksums()
        assert sums != c.table_checksums()
    finally:
        for wh in (a, b, c):
            wh.close()


async def test_checksums_unchanged_by_queries_and_write_attempts(
    warehouse: DuckDBWarehouse,
) -> None:
    before = warehouse.table_checksums()
    await warehouse.execute("SELECT count(*) AS n FROM main.ops.alerts", max_rows=1)
    for sql in ("DELETE FROM main.ops.alerts", "DROP TABLE main.claims.devices"):
        with pytest.raises(WarehouseFailure):
            await warehouse.execute(sql, max_rows=1)
    assert warehouse.table_checksums() == before


def test_connection_is_read_only_even_past_the_transpiler(warehouse: DuckDBWarehouse) -> None:
    """Defence in depth: a write that reached DuckDB would still fail."""
    before = warehouse.table_checksums()
    with pytest.raises(WarehouseFailure, match="read-only"):
        warehouse._run("DROP", "DROP TABLE main.claims.devices", 1)
    assert warehouse.table_checksums() == before


async def test_file_access_is_disabled(warehouse: DuckDBWarehouse) -> None:
    sql = "SELECT * FROM read_csv('/etc/hostname')"
    with pytest.raises(WarehouseFailure) as info:
        await warehouse.execute(sql, max_rows=1)
    assert "not supported on the embedded engine" in info.value.detail  # never verified
    ungated = DuckDBWarehouse(now=FIXED_NOW, verified=UNGATED)  # the lockdown below the rule
    try:
        with pytest.raises(WarehouseFailure) as info:
            await ungated.execute(sql, max_rows=1)
    finally:
        ungated.close()
    assert info.value.kind is FailureKind.databricks_error
    assert "disabled" in info.value.detail


async def test_timeout_maps_to_databricks_timeout() -> None:
    wh = DuckDBWarehouse(now=FIXED_NOW, statement_timeout_s=0.2)
    slow = (
        "SELECT count(*) AS n FROM main.claims.claim_events a CROSS JOIN main.claims.claim_events b "
        "WHERE concat(a.claim_id, b.claim_id) = 'never'"
    )
    try:
        with pytest.raises(WarehouseFailure) as info:
            await wh.execute(slow, max_rows=1)
        assert info.value.kind is FailureKind.databricks_timeout
        # the warehouse still works afterwards
        assert (await wh.execute("SELECT 1 AS one", max_rows=1)).rows == [{"one": 1}]
    finally:
        wh.close()


async def test_sql_error_maps_to_databricks_error(warehouse: DuckDBWarehouse) -> None:
    with pytest.raises(WarehouseFailure) as info:
        await warehouse.execute("SELECT no_such_column FROM main.ops.alerts", max_rows=1)
    assert info.value.kind is FailureKind.databricks_error
    assert "no_such_column" in info.value.detail


async def test_transpile_failure_maps_to_databricks_error(warehouse: DuckDBWarehouse) -> None:
    before = warehouse.executed_statements
    with pytest.raises(WarehouseFailure) as info:
        await warehouse.execute("SELECT FROM WHERE (", max_rows=1)
    assert info.value.kind is FailureKind.databricks_error
    assert warehouse.executed_statements == before  # nothing reached DuckDB


async def test_division_by_zero_raises_like_databricks(warehouse: DuckDBWarehouse) -> None:
    sql = "SELECT count(*) / sum(CASE WHEN region = 'nowhere' THEN 1 ELSE 0 END) AS r FROM main.ops.alerts"
    with pytest.raises(WarehouseFailure, match="DIVIDE_BY_ZERO") as info:
        await warehouse.execute(sql, max_rows=1)
    assert info.value.kind is FailureKind.databricks_error


async def test_truncation(warehouse: DuckDBWarehouse) -> None:
    sql = "SELECT alert_id FROM main.ops.alerts ORDER BY alert_id LIMIT 25"
    cut = await warehouse.execute(sql, max_rows=10)
    assert len(cut.rows) == 10 and cut.truncated
    assert cut.rows[0] == {"alert_id": "ALR-000000"}
    full = await warehouse.execute(sql, max_rows=25)
    assert len(full.rows) == 25 and not full.truncated
    assert full.rows[:10] == cut.rows


async def test_rows_are_json_safe(warehouse: DuckDBWarehouse) -> None:
    sql = (
        "SELECT event_ts, amount, event_id, attributes:damage AS damage FROM main.claims.claim_events "
        "WHERE event_type = 'filed' ORDER BY event_id LIMIT 1"
    )
    result = await warehouse.execute(sql, max_rows=1)
    (row,) = result.rows
    assert isinstance(row["event_ts"], str) and row["event_ts"].endswith("+00:00")
    assert isinstance(row["amount"], int | float)
    assert isinstance(row["event_id"], int)
    assert row["damage"] in {"screen", "battery", "water", "theft", "other"}
    assert [c.as_dict() for c in result.columns] == [
        {"name": "event_ts", "type": "timestamp"},
        {"name": "amount", "type": "number"},
        {"name": "event_id", "type": "integer"},
        {"name": "damage", "type": "string"},
    ]
    assert result.meta["engine"] == "duckdb" and "JSON_EXTRACT_STRING" in result.meta["duckdb_sql"]


async def test_hostile_filter_values_match_nothing(warehouse: DuckDBWarehouse) -> None:
    before = warehouse.table_checksums()
    base = WIDGETS["claims-filed-by-region"].data_intent
    hostile = {"column": "region", "op": "=", "value": "x' OR '1'='1"}
    intent = DataIntent(**{**base.model_dump(), "filters": [hostile]})
    sql = compile_intent(METRICS[intent.metric_id], intent, now=datetime.now(UTC))
    assert (await warehouse.execute(sql, max_rows=100)).rows == []
    assert warehouse.table_checksums() == before


async def test_executed_statements_log_both_dialects(warehouse: DuckDBWarehouse) -> None:
    sql = "SELECT attributes:carrier AS c FROM main.claims.claim_events LIMIT 1"
    result = await warehouse.execute(sql, max_rows=1)
    log = warehouse.executed_statements
    assert log[-2:] == [sql, result.meta["duckdb_sql"]]
    assert log[-1] != log[-2]


async def test_executed_statements_are_bounded() -> None:
    wh = DuckDBWarehouse(now=FIXED_NOW, statement_log_size=6)
    try:
        for i in range(5):
            await wh.execute(f"SELECT {i} AS i", max_rows=1)
        log = wh.executed_statements
        assert len(log) == 6
        assert log[0] == "SELECT 2 AS i"
    finally:
        wh.close()


async def test_concurrent_queries_use_separate_cursors(warehouse: DuckDBWarehouse) -> None:
    sqls = [
        f"SELECT count(*) AS n FROM main.ops.alerts WHERE severity = '{s}'"
        for s in ("critical", "high", "medium", "low")
    ] * 3
    results = await asyncio.gather(*(warehouse.execute(s, max_rows=1) for s in sqls))
    total = sum(r.rows[0]["n"] for r in results[:4])
    assert total == 10_000
    assert [r.rows for r in results[:4]] == [r.rows for r in results[4:8]]


async def test_session_time_zone_is_utc(warehouse: DuckDBWarehouse) -> None:
    result = await warehouse.execute(
        "SELECT CAST(CAST('2026-01-01 00:00:00' AS TIMESTAMP) AS STRING) AS t", max_rows=1
    )
    assert result.rows == [{"t": "2026-01-01 00:00:00"}]  # as Databricks prints it: no offset


async def test_ping_and_close() -> None:
    wh = DuckDBWarehouse(now=FIXED_NOW)
    assert await wh.ping()
    wh.close()
    assert not await wh.ping()
    wh.close()  # idempotent


async def test_file_path_build(tmp_path: Path) -> None:
    path = tmp_path / "lake.duckdb"
    wh = DuckDBWarehouse(now=FIXED_NOW, path=str(path))
    try:
        assert path.exists()
        rows = (await wh.execute("SELECT count(*) AS n FROM main.claims.devices", max_rows=1)).rows
        assert rows == [{"n": 5000}]
    finally:
        wh.close()
    assert path.exists()  # a given path is kept


def test_resource_limits_are_set_and_locked() -> None:
    import duckdb as _duckdb

    from adapters.duckdb_warehouse import DuckDBWarehouse

    wh = DuckDBWarehouse()
    try:
        con = wh._con
        assert con.execute("SELECT current_setting('threads')").fetchone()[0] == 2  # type: ignore[index]
        limit = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]  # type: ignore[index]
        assert (
            limit.replace(" ", "")
            .upper()
            .startswith(("1.0GIB", "953.6MIB", "1GB", "1000.0MB", "953.6MB"))
        ), limit
        with pytest.raises(_duckdb.Error):
            con.execute("SET memory_limit = '100GB'")
    finally:
        wh.close()


async def test_duplicate_result_column_names_keep_every_column() -> None:
    from adapters.duckdb_warehouse import DuckDBWarehouse

    wh = DuckDBWarehouse()
    try:
        result = await wh.execute("SELECT 1 AS a, 2 AS a, 3 AS a_2", max_rows=5)
    finally:
        wh.close()
    assert [c.name for c in result.columns] == ["a", "a_2", "a_2_2"]
    assert result.rows == [{"a": 1, "a_2": 2, "a_2_2": 3}]


async def test_describe_after_close_is_a_warehouse_failure() -> None:
    """A registry reload racing the shutdown reads the catalog of a closed warehouse: a
    WarehouseFailure (the known schemas are kept), not a crash in the listener."""
    wh = DuckDBWarehouse(now=FIXED_NOW)
    assert await wh.describe(["main.ops.alerts"])
    wh.close()
    with pytest.raises(WarehouseFailure, match="catalog read failed"):
        await wh.describe(["main.ops.alerts"])
