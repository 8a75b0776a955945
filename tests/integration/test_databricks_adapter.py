"""DatabricksWarehouse end to end: the real databricks-sql-connector (use_sea=True) against
a local Statement Execution API server backed by DuckDB (fakes/databricks_sea.py)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import duckdb
import pytest

from adapters.databricks import (
    DatabricksWarehouse,
    classify,
    normalize_host,
    normalize_http_path,
)
from domain.failures import FailureKind, WarehouseFailure
from fakes.databricks_sea import FakeSeaServer

DEVICES_SQL = (
    "SELECT device_id, region, price, installed_on, last_seen, active, tags "
    "FROM main.claims.devices ORDER BY device_id"
)


@pytest.fixture(scope="module")
def duck() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA main.claims")
    con.execute(
        """CREATE TABLE main.claims.devices (
               device_id VARCHAR, region VARCHAR, price DECIMAL(12, 2), installed_on DATE,
               last_seen TIMESTAMP, active BOOLEAN, tags VARCHAR[])"""
    )
    con.execute(
        """INSERT INTO main.claims.devices
           SELECT printf('dev-%02d', i), CASE WHEN i % 2 = 0 THEN 'east' ELSE 'west' END,
                  CAST(i * 10.25 AS DECIMAL(12, 2)), DATE '2024-01-01' + i,
                  TIMESTAMP '2024-03-01 08:30:00.250' + i * INTERVAL 1 HOUR,
                  i % 3 <> 0, ['t' || i]
           FROM (SELECT CAST(range AS INTEGER) AS i FROM range(1, 11))"""
    )
    con.execute(
        "INSERT INTO main.claims.devices VALUES ('dev-99', NULL, NULL, NULL, NULL, NULL, NULL)"
    )
    yield con
    con.close()


@pytest.fixture
def server(duck: duckdb.DuckDBPyConnection) -> Iterator[FakeSeaServer]:
    with FakeSeaServer(duck, max_wait_s=0.0) as srv:
        yield srv


@pytest.fixture
async def make_warehouse() -> AsyncIterator[Callable[..., DatabricksWarehouse]]:
    made: list[DatabricksWarehouse] = []

    def make(srv: FakeSeaServer, **overrides: Any) -> DatabricksWarehouse:
        kwargs: dict[str, Any] = {
            "server_hostname": srv.server_hostname,
            "port": srv.port,
            "http_path": srv.http_path,
            "access_token": srv.token,
            "transport": "sea",  # the fake speaks the Statement Execution API
            "query_timeout_s": 5.0,
            "connect_timeout_s": 3.0,
            "retry_attempts": 3,
            "retry_delay_s": 0.1,
            "retry_budget_s": 2.0,
        }
        kwargs.update(overrides)
        wh = DatabricksWarehouse(**kwargs)
        made.append(wh)
        return wh

    yield make
    for wh in made:
        await wh.aclose()


async def _failure(wh: DatabricksWarehouse, sql: str = DEVICES_SQL) -> WarehouseFailure:
    with pytest.raises(WarehouseFailure) as info:
        await wh.execute(sql, max_rows=100)
    return info.value


def _wait_until(predicate: Callable[[], bool], timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _posts(srv: FakeSeaServer, suffix: str) -> int:
    return sum(1 for r in srv.requests if r.method == "POST" and r.path.endswith(suffix))


# ------------------------------------------------------------------ happy path


async def test_rows_schema_and_json_safe_values(server: FakeSeaServer, make_warehouse) -> None:
    wh = make_warehouse(server)
    result = await wh.execute(DEVICES_SQL, max_rows=100)

    assert wh.name == "databricks"
    assert result.schema == [
        {"name": "device_id", "type": "string"},
        {"name": "region", "type": "string"},
        {"name": "price", "type": "number"},
        {"name": "installed_on", "type": "date"},
        {"name": "last_seen", "type": "timestamp"},
        {"name": "active", "type": "boolean"},
        {"name": "tags", "type": "json"},
    ]
    assert len(result.rows) == 11 and not result.truncated
    first = result.rows[0]
    assert first == {
        "device_id": "dev-01",
        "region": "west",
        "price": 10.25,
        "installed_on": "2024-01-02",
        "last_seen": "2024-03-01T09:30:00.250000+00:00",
        "active": True,
        "tags": ["t1"],
    }
    assert result.rows[9]["price"] == 102.5
    assert result.rows[-1] == {
        "device_id": "dev-99",
        "region": None,
        "price": None,
        "installed_on": None,
        "last_seen": None,
        "active": None,
        "tags": None,
    }
    json.dumps(result.rows)  # JSON-safe: Decimal/date/datetime were converted
    assert result.sql == DEVICES_SQL
    assert result.meta["query_id"] == server.statements[-1].statement_id
    assert result.meta["engine"] == "databricks"

    stmt = server.statements[-1]
    assert stmt.statement == DEVICES_SQL  # the SQL went over the wire unchanged
    assert stmt.request["disposition"] == "INLINE" and stmt.request["format"] == "JSON_ARRAY"
    assert stmt.request["row_limit"] == 101
    session = server.sessions[stmt.session_id]
    assert session.session_confs == {"statement_timeout": "10"}  # 5 s client + 5 s margin
    assert all(r.authorization == f"Bearer {server.token}" for r in server.requests)
    assert "widget-data-resolver" in (server.requests[0].user_agent or "")


async def test_databricks_sql_is_run_through_the_dialect(server, make_warehouse) -> None:
    wh = make_warehouse(server)
    sql = (
        "SELECT region, date_trunc('MONTH', last_seen) AS month, count(*) AS n "
        "FROM main.claims.devices WHERE region IS NOT NULL GROUP BY ALL ORDER BY region"
    )
    result = await wh.execute(sql, max_rows=10)
    assert result.rows == [
        {"region": "east", "month": "2024-03-01T00:00:00+00:00", "n": 5},
        {"region": "west", "month": "2024-03-01T00:00:00+00:00", "n": 5},
    ]
    assert [c.type for c in result.columns] == ["string", "timestamp", "integer"]


async def test_row_cap_truncates_via_fetchmany(server, make_warehouse) -> None:
    wh = make_warehouse(server)
    capped = await wh.execute(DEVICES_SQL, max_rows=3)
    assert [r["device_id"] for r in capped.rows] == ["dev-01", "dev-02", "dev-03"]
    assert capped.truncated
    assert server.statements[-1].request["row_limit"] == 4

    exact = await wh.execute(DEVICES_SQL, max_rows=11)
    assert len(exact.rows) == 11 and not exact.truncated


async def test_one_session_is_reused_across_calls(server, make_warehouse) -> None:
    wh = make_warehouse(server)
    await wh.execute("SELECT 1 AS one", max_rows=1)
    await wh.execute("SELECT 2 AS two", max_rows=1)
    assert _posts(server, "/sessions") == 1
    assert len({s.session_id for s in server.statements}) == 1
    assert server.statement_texts == ["SELECT 1 AS one", "SELECT 2 AS two"]
    # each statement was closed after its rows were fetched
    assert all(s.closed for s in server.statements)


async def test_concurrent_calls_share_a_bounded_pool(server, make_warehouse) -> None:
    wh = make_warehouse(server, pool_size=2)
    results = await asyncio.gather(*(wh.execute(f"SELECT {i} AS i", max_rows=1) for i in range(6)))
    assert [r.rows for r in results] == [[{"i": i}] for i in range(6)]
    assert 1 <= _posts(server, "/sessions") <= 4  # at most one per worker thread


async def test_ping(server, make_warehouse) -> None:
    assert await make_warehouse(server).ping() is True
    assert await make_warehouse(server, access_token="wrong").ping() is False


# ------------------------------------------------------------------ failures


async def test_sql_error_is_databricks_error_with_the_server_message(
    server, make_warehouse
) -> None:
    wh = make_warehouse(server)
    failure = await _failure(wh, "SELECT * FROM main.claims.no_such_table")
    assert failure.kind is FailureKind.databricks_error
    assert "TABLE_OR_VIEW_NOT_FOUND" in failure.detail and "no_such_table" in failure.detail

    # a SQL error leaves the session usable
    assert (await wh.execute("SELECT 1 AS one", max_rows=1)).rows == [{"one": 1}]
    assert _posts(server, "/sessions") == 1


async def test_failed_statement_is_databricks_error(server, make_warehouse) -> None:
    server.fail_message = "[DIVIDE_BY_ZERO] Division by zero. SQLSTATE: 22012"
    failure = await _failure(make_warehouse(server))
    assert failure.kind is FailureKind.databricks_error
    assert "[DIVIDE_BY_ZERO] Division by zero" in failure.detail


async def test_server_side_statement_timeout_is_databricks_timeout(server, make_warehouse) -> None:
    server.fail_message = "[STATEMENT_TIMEOUT] Query has been timed out after 10 seconds"
    failure = await _failure(make_warehouse(server))
    assert failure.kind is FailureKind.databricks_timeout


async def test_wrong_token_is_databricks_auth(server, make_warehouse) -> None:
    failure = await _failure(make_warehouse(server, access_token="dapi-wrong"))
    assert failure.kind is FailureKind.databricks_auth
    assert "401" in failure.detail
    assert "dapi-wrong" not in failure.detail
    assert _posts(server, "/sessions") == 1  # 401 is not retried


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_rejected_mid_session_is_databricks_auth(server, make_warehouse, status) -> None:
    wh = make_warehouse(server)
    await wh.execute("SELECT 1 AS one", max_rows=1)
    server.http_status = status
    failure = await _failure(wh)
    assert failure.kind is FailureKind.databricks_auth
    assert str(status) in failure.detail


async def test_503_is_databricks_unavailable_after_short_retries(server, make_warehouse) -> None:
    server.http_status = 503
    failure = await _failure(make_warehouse(server))
    assert failure.kind is FailureKind.databricks_unavailable
    assert "503" in failure.detail
    assert _posts(server, "/sessions") == 3  # retry_attempts, then give up


async def test_503_on_execute_is_databricks_unavailable(server, make_warehouse) -> None:
    wh = make_warehouse(server)
    await wh.execute("SELECT 1 AS one", max_rows=1)
    server.http_status = 503
    failure = await _failure(wh)
    assert failure.kind is FailureKind.databricks_unavailable
    assert _posts(server, "/statements") == 1 + 3


async def test_nothing_listening_is_databricks_unavailable() -> None:
    port = _free_port()
    wh = DatabricksWarehouse(
        server_hostname="http://127.0.0.1",
        port=port,
        http_path="/sql/1.0/warehouses/abc",
        access_token="t",
        transport="sea",
        connect_timeout_s=3.0,
        retry_attempts=2,
        retry_delay_s=0.1,
        retry_budget_s=2.0,
    )
    try:
        failure = await _failure(wh)
    finally:
        await wh.aclose()
    assert failure.kind is FailureKind.databricks_unavailable
    assert "connection failed" in failure.detail


@pytest.mark.parametrize("max_wait_s", [0.0, 2.0], ids=["id-known-at-once", "post-held"])
async def test_slow_statement_times_out_and_is_cancelled(
    duck, make_warehouse, max_wait_s: float
) -> None:
    """With max_wait_s=2 the server holds POST /statements past the client timeout, so
    the statement id is not known yet when the guard fires: the cancel waits for it."""
    with FakeSeaServer(duck, max_wait_s=max_wait_s) as srv:
        srv.statement_delay_s = 30.0
        wh = make_warehouse(srv, query_timeout_s=0.5)
        failure = await _failure(wh)
        assert failure.kind is FailureKind.databricks_timeout
        assert "0.5s" in failure.detail

        slow = srv.statements[0]
        assert await asyncio.to_thread(_wait_until, lambda: slow.statement_id in srv.canceled)
        assert slow.state(time.monotonic()) in ("CANCELED", "CLOSED")

        # the warehouse is usable again
        srv.statement_delay_s = 0.0
        assert (await wh.execute("SELECT 1 AS one", max_rows=1)).rows == [{"one": 1}]


async def test_cancelled_caller_cancels_the_statement(server, make_warehouse) -> None:
    server.statement_delay_s = 30.0
    wh = make_warehouse(server)
    task = asyncio.create_task(wh.execute(DEVICES_SQL, max_rows=10))
    assert await asyncio.to_thread(_wait_until, lambda: len(server.statements) == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stmt = server.statements[0]
    assert await asyncio.to_thread(_wait_until, lambda: stmt.statement_id in server.canceled)


# ------------------------------------------------------------------ recovery


async def test_recovers_when_the_server_comes_back(server, make_warehouse) -> None:
    wh = make_warehouse(server)
    server.http_status = 503
    assert (await _failure(wh)).kind is FailureKind.databricks_unavailable
    server.reset_failures()
    result = await wh.execute(DEVICES_SQL, max_rows=2)
    assert len(result.rows) == 2 and result.truncated


async def test_recovers_after_a_restart_that_forgot_the_session(duck, make_warehouse) -> None:
    first = FakeSeaServer(duck, max_wait_s=0.0).start()
    port = first.port
    wh = make_warehouse(first)
    await wh.execute("SELECT 1 AS one", max_rows=1)  # leaves a pooled session
    first.stop()

    assert (await _failure(wh)).kind is FailureKind.databricks_unavailable

    with FakeSeaServer(duck, port=port, max_wait_s=0.0) as second:
        assert (await wh.execute("SELECT 2 AS two", max_rows=1)).rows == [{"two": 2}]
        assert _posts(second, "/sessions") == 1


async def test_a_stale_pooled_session_is_reopened_once(duck, make_warehouse) -> None:
    first = FakeSeaServer(duck, max_wait_s=0.0).start()
    port = first.port
    wh = make_warehouse(first)
    await wh.execute("SELECT 1 AS one", max_rows=1)
    first.stop()
    with FakeSeaServer(duck, port=port, max_wait_s=0.0) as second:
        # the pooled session is unknown here: 404, then a fresh session and a retry
        assert (await wh.execute("SELECT 2 AS two", max_rows=1)).rows == [{"two": 2}]
        assert _posts(second, "/statements") == 2
        assert _posts(second, "/sessions") == 1
        assert [r.status for r in second.requests if r.path.endswith("/statements")] == [404, 200]


# ------------------------------------------------------------------ configuration


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("adb-123.4.azuredatabricks.net", None, ("https://adb-123.4.azuredatabricks.net", 443)),
        (
            "https://adb-123.4.azuredatabricks.net/",
            None,
            ("https://adb-123.4.azuredatabricks.net", 443),
        ),
        (
            "HTTPS://dbc-1.cloud.databricks.com/?o=1",
            None,
            ("https://dbc-1.cloud.databricks.com", 443),
        ),
        ("http://127.0.0.1", 8080, ("http://127.0.0.1", 8080)),
        ("http://127.0.0.1:9000", None, ("http://127.0.0.1", 9000)),
        ("127.0.0.1:9000", 9001, ("https://127.0.0.1", 9001)),
    ],
)
def test_normalize_host(host: str, port: int | None, expected: tuple[str, int]) -> None:
    assert normalize_host(host, port) == expected


@pytest.mark.parametrize("host", ["", "  ", "ftp://x.example.com", "https://"])
def test_normalize_host_rejects_garbage(host: str) -> None:
    with pytest.raises(ValueError):
        normalize_host(host)


def test_http_path_must_name_a_warehouse_for_sea() -> None:
    assert normalize_http_path("sql/1.0/warehouses/abc", use_sea=True) == "/sql/1.0/warehouses/abc"
    with pytest.raises(ValueError):
        normalize_http_path("/sql/protocolv1/o/1/0123-clusterid", use_sea=True)
    assert normalize_http_path("/sql/protocolv1/o/1/x", use_sea=False) == "/sql/protocolv1/o/1/x"


def test_classify_other_connector_errors() -> None:
    """A connector error that is neither transport nor auth: a query error, or, while
    opening a session, the warehouse being unavailable."""
    from databricks.sql.exc import ProgrammingError

    failure = classify(ProgrammingError("Invalid result format"))
    assert failure.kind is FailureKind.databricks_error
    assert "Invalid result format" in failure.detail
    assert (
        classify(ProgrammingError("x"), connecting=True).kind is FailureKind.databricks_unavailable
    )


async def test_demo_lakehouse_query_matches_duckdb(make_warehouse) -> None:
    """A metric-style query over the demo lakehouse (TIMESTAMPTZ, DECIMAL) returns what
    DuckDB itself returns for the transpiled SQL, made JSON-safe."""
    lakehouse = pytest.importorskip("adapters.lakehouse")
    import sqlglot

    from domain.jsonsafe import json_safe

    con = duckdb.connect()
    lakehouse.build_lakehouse(con, now=datetime(2025, 1, 15, 12, 0, tzinfo=UTC))
    sql = (
        "SELECT region, count(DISTINCT claim_id) AS value, sum(amount) AS total, "
        "max(event_ts) AS last_event FROM main.claims.claim_events "
        "WHERE event_type = 'filed' GROUP BY region ORDER BY value DESC, region LIMIT 100"
    )
    with FakeSeaServer(con, max_wait_s=0.0) as srv:
        result = await make_warehouse(srv).execute(sql, max_rows=50)

    expected_rows = con.execute(sqlglot.transpile(sql, read="databricks", write="duckdb")[0])
    expected = [
        {"region": r, "value": v, "total": json_safe(t), "last_event": e.astimezone(UTC)}
        for r, v, t, e in expected_rows.fetchall()
    ]
    assert len(result.rows) == len(expected) > 1
    for got, want in zip(result.rows, expected, strict=True):
        assert got["region"] == want["region"] and got["value"] == want["value"]
        assert got["total"] == pytest.approx(want["total"])
        assert datetime.fromisoformat(got["last_event"]) == want["last_event"]
    assert [c.type for c in result.columns] == ["string", "integer", "number", "timestamp"]
    con.close()


@pytest.mark.parametrize(
    "message",
    [
        "[REMOTE_FUNCTION_ERROR] upstream call failed with status 401",
        "too many 503 error responses from the source system",
        "SEA HTTP request failed with status 403",
        "the query timed out on a remote source",
    ],
)
async def test_a_failed_statement_is_classified_by_structure_not_by_its_text(
    server, make_warehouse, message: str
) -> None:
    # issue 9: a FAILED statement whose message mentions "status 401" was databricks_auth
    server.fail_message = message
    failure = await _failure(make_warehouse(server))
    assert failure.kind is FailureKind.databricks_error
    assert message in failure.detail  # the server's message is kept


async def test_the_server_error_code_marks_a_statement_timeout(server, make_warehouse) -> None:
    server.fail_error_code = "DEADLINE_EXCEEDED"
    server.fail_message = "the statement ran out of time"
    failure = await _failure(make_warehouse(server))
    assert failure.kind is FailureKind.databricks_timeout
    assert "the statement ran out of time" in failure.detail
