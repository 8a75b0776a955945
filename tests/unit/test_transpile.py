"""Databricks -> DuckDB transpilation: each fix, executed on a real DuckDB.

The expected values are what Spark SQL (ANSI mode, session time zone UTC) returns for
the same expressions; tests/integration/test_spark_reference.py checks that on a real Spark.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import duckdb
import pytest
import sqlglot

from adapters.embedded_rule import UNGATED
from adapters.transpile import (
    DIVIDE_BY_ZERO_MESSAGE,
    REMAINDER_BY_ZERO_MESSAGE,
    TranspileError,
    to_duckdb,
)


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect()
    c.execute("SET TimeZone = 'UTC'")
    yield c
    c.close()


def _one(con: duckdb.DuckDBPyConnection, databricks_sql: str) -> tuple[Any, ...]:
    row = con.execute(to_duckdb(databricks_sql, UNGATED)).fetchone()
    assert row is not None
    return row


def _sqlglot_plain(con: duckdb.DuckDBPyConnection, databricks_sql: str) -> tuple[Any, ...]:
    """What sqlglot alone would give (to show each fix is needed)."""
    row = con.execute(
        sqlglot.transpile(databricks_sql, read="databricks", write="duckdb")[0]
    ).fetchone()
    assert row is not None
    return row


A = "TIMESTAMP '2026-01-01 00:00:59'"
B = "TIMESTAMP '2026-01-01 00:02:00'"


# (unit, start, end, what Spark 4 returns) -- checked on a real Spark session.
TIMESTAMPDIFF_CASES = [
    ("MINUTE", A, B, 1),
    ("MINUTE", B, A, -1),
    ("SECOND", A, B, 61),
    ("HOUR", A, B, 0),
    ("HOUR", "TIMESTAMP '2026-01-01 10:00:00.5'", "TIMESTAMP '2026-01-01 08:00:00'", -2),
    ("DAY", "TIMESTAMP '2026-01-01 23:00:00'", "TIMESTAMP '2026-01-02 01:00:00'", 0),
    ("DAY", "TIMESTAMP '2026-01-03 09:59:00'", "TIMESTAMP '2026-01-01 10:00:00'", -1),
    ("WEEK", "DATE '2026-01-01'", "DATE '2026-01-14'", 1),
    ("WEEK", "TIMESTAMP '2026-01-15 09:59:00'", "TIMESTAMP '2026-01-01 10:00:00'", -1),
    ("MONTH", "DATE '2026-01-31'", "DATE '2026-02-28'", 0),
    ("MONTH", "DATE '2026-01-30'", "DATE '2026-02-28'", 0),
    ("MONTH", "TIMESTAMP '2026-01-31 10:00:00'", "TIMESTAMP '2026-02-28 11:00:00'", 0),
    ("MONTH", "DATE '2026-02-28'", "DATE '2026-01-31'", 0),
    ("MONTH", "TIMESTAMP '2026-01-15 10:00:00'", "TIMESTAMP '2026-03-15 09:59:59'", 1),
    ("MONTH", "TIMESTAMP '2026-01-15 10:00:00'", "TIMESTAMP '2026-03-15 10:00:00'", 2),
    ("MONTH", "TIMESTAMP '2026-03-15 10:00:00'", "TIMESTAMP '2026-01-15 10:00:01'", -1),
    ("QUARTER", "DATE '2026-01-31'", "DATE '2026-04-30'", 0),
    ("QUARTER", "TIMESTAMP '2026-05-31 00:00:00'", "TIMESTAMP '2025-11-30 00:00:01'", -1),
    ("YEAR", "DATE '2024-02-29'", "DATE '2025-02-28'", 0),
    ("YEAR", "TIMESTAMP '2020-03-15 10:00:00'", "TIMESTAMP '2026-03-15 09:00:00'", 5),
]


@pytest.mark.parametrize(("unit", "start", "end", "spark"), TIMESTAMPDIFF_CASES)
def test_timestampdiff_counts_whole_elapsed_units(
    con: duckdb.DuckDBPyConnection, unit: str, start: str, end: str, spark: int
) -> None:
    assert _one(con, f"SELECT TIMESTAMPDIFF({unit}, {start}, {end})") == (spark,)


def test_sqlglot_alone_counts_boundaries(con: duckdb.DuckDBPyConnection) -> None:
    """The gap the TIMESTAMPDIFF fix closes."""
    assert _sqlglot_plain(con, f"SELECT TIMESTAMPDIFF(MINUTE, {A}, {B})") == (2,)
    month = "SELECT TIMESTAMPDIFF(MONTH, DATE '2026-01-31', DATE '2026-02-28')"
    assert _sqlglot_plain(con, month) == (1,)


def test_datediff_with_unit_is_timestampdiff_and_without_is_days(
    con: duckdb.DuckDBPyConnection,
) -> None:
    sql = (
        f"SELECT datediff(MINUTE, {A}, {B}), DATE_DIFF(MINUTE, {A}, {B}), "
        "datediff(TIMESTAMP '2026-01-02 00:30:00', TIMESTAMP '2026-01-01 23:30:00'), "
        "datediff(DATE '2026-01-01', DATE '2026-01-05')"
    )
    assert _one(con, sql) == (1, 1, 1, -4)


def test_timestampdiff_in_an_aggregate(con: duckdb.DuckDBPyConnection) -> None:
    sql = (
        "SELECT avg(TIMESTAMPDIFF(MINUTE, s, e)) FROM VALUES "
        f"({A}, {B}), (TIMESTAMP '2026-01-01 00:00:00', TIMESTAMP '2026-01-01 00:00:59') AS t(s, e)"
    )
    assert _one(con, sql) == (0.5,)


def test_unix_timestamp_of_timestamp_date_and_string(con: duckdb.DuckDBPyConnection) -> None:
    sql = (
        "SELECT unix_timestamp(TIMESTAMP '2026-01-01 00:00:59.7'), "
        "unix_timestamp('2026-01-01 00:00:59'), unix_timestamp(DATE '2026-01-01'), "
        "unix_timestamp('2026-01-01', 'yyyy-MM-dd')"
    )
    row = _one(con, sql)
    assert row == (1767225659, 1767225659, 1767225600, 1767225600)
    assert all(isinstance(v, int) for v in row)
    with pytest.raises(duckdb.Error):  # sqlglot alone runs STRPTIME on a timestamp
        _sqlglot_plain(con, "SELECT unix_timestamp(TIMESTAMP '2026-01-01 00:00:59.7')")


def test_unix_timestamp_without_arguments_is_now(con: duckdb.DuckDBPyConnection) -> None:
    (value,) = _one(con, "SELECT unix_timestamp()")
    assert abs(value - datetime.now(UTC).timestamp()) < 3600


def test_trunc_returns_a_date_and_null_for_unknown_formats(con: duckdb.DuckDBPyConnection) -> None:
    ts = "TIMESTAMP '2026-03-15 10:11:12'"
    sql = (
        f"SELECT trunc({ts}, 'MM'), trunc({ts}, 'MON'), trunc({ts}, 'YEAR'), trunc({ts}, 'yy'), "
        f"trunc({ts}, 'QUARTER'), trunc({ts}, 'WEEK'), trunc(DATE '2026-03-15', 'month'), "
        f"trunc({ts}, 'DD')"
    )
    assert _one(con, sql) == (
        date(2026, 3, 1),
        date(2026, 3, 1),
        date(2026, 1, 1),
        date(2026, 1, 1),
        date(2026, 1, 1),
        date(2026, 3, 9),
        date(2026, 3, 1),
        None,
    )
    with pytest.raises(duckdb.Error):  # DuckDB does not know 'MM'
        _sqlglot_plain(con, f"SELECT trunc({ts}, 'MM')")


def test_date_trunc_spark_units_keep_a_timestamp(con: duckdb.DuckDBPyConnection) -> None:
    ts = "TIMESTAMP '2026-03-15 10:11:12'"
    row = _one(
        con, f"SELECT date_trunc('MM', {ts}), date_trunc('YYYY', {ts}), date_trunc('DD', {ts})"
    )
    assert [v.astimezone(UTC) for v in row] == [
        datetime(2026, 3, 1, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 3, 15, tzinfo=UTC),
    ]


JSON_ROW = """SELECT '{"damage": "screen", "n": {"a": 1}, "k": 7, "a b": "spaced"}' AS attributes"""


def test_colon_path_extracts_strings(con: duckdb.DuckDBPyConnection) -> None:
    sql = (
        f"WITH t AS ({JSON_ROW}) SELECT attributes:damage, attributes:n, attributes:n.a, "
        "attributes:k, attributes:missing, attributes:['a b'] FROM t WHERE attributes:damage = 'screen'"
    )
    assert _one(con, sql) == ("screen", '{"a":1}', "1", "7", None, "spaced")
    assert _sqlglot_plain(con, f"WITH t AS ({JSON_ROW}) SELECT attributes:damage FROM t") == (
        '"screen"',
    )


@pytest.mark.parametrize(
    ("op", "message"),
    [
        ("/", DIVIDE_BY_ZERO_MESSAGE),
        ("div", DIVIDE_BY_ZERO_MESSAGE),
        ("%", REMAINDER_BY_ZERO_MESSAGE),
    ],
)
def test_division_by_zero_raises(con: duckdb.DuckDBPyConnection, op: str, message: str) -> None:
    sql = f"SELECT 10 {op} x FROM VALUES (2), (0) AS t(x)"
    with pytest.raises(duckdb.Error) as info:
        con.execute(to_duckdb(sql, UNGATED)).fetchall()
    assert message in str(info.value)


def test_division_without_zero_is_unchanged(con: duckdb.DuckDBPyConnection) -> None:
    sql = (
        "SELECT sum(x) / count(*), 7 / 2, 7 div 2, 7 % 4, 1 / CAST(NULL AS INT), try_divide(1, 0) "
        "FROM VALUES (1), (2) AS t(x)"
    )
    assert _one(con, sql) == (1.5, 3.5, 3, 3, None, None)
    assert _sqlglot_plain(con, "SELECT 1 / x FROM VALUES (0) AS t(x)")[0] in (None, float("inf"))


def test_nested_divisions_are_all_guarded(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(duckdb.Error, match=r"DIVIDE_BY_ZERO"):
        _one(con, "SELECT 1 / (2 / x) FROM VALUES (0) AS t(x)")
    assert to_duckdb("SELECT a / (b / c) FROM t", UNGATED).count("ERROR(") == 3


def test_three_part_names_and_order_survive() -> None:
    sql = to_duckdb(
        "SELECT region, COUNT(*) AS value FROM main.claims.claim_events "
        "WHERE event_ts >= CAST('2026-01-01 00:00:00' AS TIMESTAMP) GROUP BY region "
        "ORDER BY value DESC, region ASC LIMIT 5"
    )
    assert sql == (
        "SELECT claim_events.region AS region, COUNT(*) AS value FROM main.claims.claim_events "
        "AS claim_events WHERE claim_events.event_ts >= CAST('2026-01-01 00:00:00' AS "
        "TIMESTAMPTZ) GROUP BY claim_events.region "
        "ORDER BY value DESC, region ASC NULLS FIRST LIMIT 5"
    )


@pytest.mark.parametrize(
    "sql",
    [
        "DROP TABLE main.claims.claim_events",
        "INSERT INTO t VALUES (1)",
        "SELECT 1; SELECT 2",
        "SELECT FROM WHERE (",
        "",
    ],
)
def test_only_one_query_is_accepted(sql: str) -> None:
    with pytest.raises(TranspileError) as info:
        to_duckdb(sql)
    assert "\x1b[" not in str(info.value)


def test_readme_lists_every_construct_the_embedded_engine_refuses() -> None:
    from adapters.embedded_refusals import REFUSED_CLASSES, REFUSED_NAMES
    from service.settings import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text()
    for name in {*REFUSED_CLASSES.values(), *(f"{n}()" for n in REFUSED_NAMES)}:
        assert f"`{name}`" in readme, name


def test_refusal_names_the_construct() -> None:
    from adapters.embedded_refusals import EmbeddedUnsupported

    with pytest.raises(
        EmbeddedUnsupported, match=r"skewness\(decimal\) is not supported on the embedded engine"
    ):
        to_duckdb("SELECT skewness(amount) FROM main.claims.claim_events")


# (subject, pattern, what Spark 4 answers: a value, or None for its ESC_IN_THE_MIDDLE error)
LIKE_CASES = [
    ("a_b", r"a\_b", True),
    ("axb", r"a\_b", False),
    (r"a\xb", r"a\_b", False),
    ("100%", r"100\%", True),
    (r"a\b", r"a\\b", True),
    ("ab", r"a\b", None),
    ("a", "a\\", None),
]


@pytest.mark.parametrize(("subject", "pattern", "spark"), LIKE_CASES)
@pytest.mark.parametrize("op", ["LIKE", "ILIKE"])
def test_like_escapes_with_the_backslash(
    con: duckdb.DuckDBPyConnection, subject: str, pattern: str, spark: bool | None, op: str
) -> None:
    lit = {"s": subject.replace("\\", "\\\\"), "p": pattern.replace("\\", "\\\\")}
    literal = f"SELECT '{lit['s']}' {op} '{lit['p']}'"
    column = f"SELECT s {op} p FROM VALUES ('{lit['s']}', '{lit['p']}') AS t(s, p)"
    for sql in (literal, column):
        if spark is None:
            with pytest.raises(duckdb.Error, match="ESC_IN_THE_MIDDLE"):
                _one(con, sql)
        else:
            assert _one(con, sql) == (spark,)
    if spark is True and "\\" in pattern:
        assert _sqlglot_plain(con, literal) != (spark,)  # DuckDB has no escape unless told


def test_like_with_its_own_escape_or_a_null_pattern(con: duckdb.DuckDBPyConnection) -> None:
    assert _one(con, "SELECT 'a_b' LIKE 'a!_b' ESCAPE '!', 'ab' LIKE NULL") == (True, None)
