"""Spark as the reference engine, and comparing rows across engines.

One local Spark session (local[1], ANSI mode, session time zone UTC, loopback only) reads
the demo lakehouse generated in DuckDB for a fixed SPARK_NOW and written to parquet, so
both engines see identical data (the `spark` fixture in conftest.py). Spark has no
catalog `main`, so for Spark only the three-part names become temp views
(`main.claims.claim_events` -> `main__claims__claim_events`), and the Databricks-only
`col:path` becomes `get_json_object(col, '$.path')` (what Databricks documents it to
mean); both edits are made at sqlglot token boundaries, everything else runs as written.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
from sqlglot.tokens import TokenType

from adapters.lakehouse import TABLES, build_lakehouse
from metricsql import dialect

SPARK_NOW = datetime(2026, 11, 26, 17, 45, 24, 654321, tzinfo=UTC)  # sub-second on purpose


def spark_view_name(table: str) -> str:
    return table.replace(".", "__")


def write_lakehouse_parquet(out: Path, now: datetime = SPARK_NOW) -> dict[str, str]:
    """The demo tables for `now`, written to parquet: three-part name -> file."""
    con = duckdb.connect()
    build_lakehouse(con, now=now)
    files = {}
    for name in TABLES:
        path = out / f"{spark_view_name(name)}.parquet"
        con.execute(f"COPY (SELECT * FROM {name}) TO '{path}' (FORMAT parquet)")
        files[name] = str(path)
    con.close()
    return files


@contextmanager
def spark_session(parquet: dict[str, str], scratch: Path) -> Iterator[Any]:
    """A local Spark session with the demo tables as temp views (stopped on exit)."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    session = (
        SparkSession.builder.master("local[1]")
        .appName("wdr-spark-reference")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.default.parallelism", "1")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.ansi.enabled", "true")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.warehouse.dir", str(scratch / "warehouse"))
        .config("spark.local.dir", str(scratch / "local"))
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    for name, path in parquet.items():
        session.read.parquet(path).createOrReplaceTempView(spark_view_name(name))
    try:
        yield session
    finally:
        session.stop()


def for_spark(sql: str) -> str:
    """The Databricks SQL text with demo tables as temp views and `col:key` as
    get_json_object(col, '$.key'); every other character is left as written."""
    tokens = dialect.DATABRICKS.tokenize(sql)
    edits: list[tuple[int, int, str]] = []
    i = 0
    while i < len(tokens):
        window = tokens[i : i + 5]
        name = ".".join(t.text for t in window[0::2]).lower()
        if (
            len(window) == 5
            and all(t.token_type == TokenType.DOT for t in window[1::2])
            and name in TABLES
        ):
            edits.append((window[0].start, window[4].end, spark_view_name(name)))
            i += 5
            continue
        if i + 2 < len(tokens) and tokens[i + 1].token_type == TokenType.COLON:
            col, key = tokens[i].text, tokens[i + 2].text
            edits.append((tokens[i].start, tokens[i + 2].end, f"get_json_object({col}, '$.{key}')"))
            i += 3
            continue
        i += 1
    for start, end, text in reversed(edits):
        sql = sql[:start] + text + sql[end + 1 :]
    return sql


def normalize_value(v: Any, *, zoned: bool = True) -> Any:
    """One comparable form for a value from either engine (pyspark or DuckDB). `zoned`
    False: a naive datetime is a TIMESTAMP_NTZ (wall time), kept without an offset."""
    if hasattr(v, "asDict"):  # a pyspark Row (struct)
        v = v.asDict(recursive=False)
    if isinstance(v, dict):
        return {str(k): normalize_value(x, zoned=zoned) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [normalize_value(x, zoned=zoned) for x in v]
    if isinstance(v, bytes | bytearray | memoryview):
        return bytes(v).hex()  # as the service shows binary (domain.jsonsafe)
    if isinstance(v, datetime):
        # pyspark turns TIMESTAMP values into naive datetimes in the process's local zone
        if v.tzinfo is None and not zoned:
            return v.isoformat()
        return (v.astimezone(UTC) if v.tzinfo is None else v).isoformat()
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return float(v) if v.is_finite() else None
    if isinstance(v, float) and not math.isfinite(v):
        return repr(v)
    return v


def spark_rows(spark: Any, sql: str) -> tuple[list[str], list[list[Any]]]:
    df = spark.sql(for_spark(sql))
    zoned = ["NTZ" not in f.dataType.simpleString().upper() for f in df.schema.fields]
    rows = [
        [normalize_value(v, zoned=z) for v, z in zip(row, zoned, strict=True)]
        for row in df.collect()
    ]
    return list(df.columns), rows


def _row_sort_key(row: list[Any]) -> tuple[Any, ...]:
    return tuple(
        (0, "")
        if v is None
        else (1, round(float(v), 4), "")
        if isinstance(v, int | float) and not isinstance(v, bool)
        else (2, 0, repr(v))
        for v in row
    )


def same_value(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return bool(a == b)


def row_differences(left: list[list[Any]], right: list[list[Any]]) -> str | None:
    """None when both row lists hold the same rows (any order), else what differs."""
    if len(left) != len(right):
        return f"{len(left)} rows vs {len(right)} rows"
    for a, b in zip(sorted(left, key=_row_sort_key), sorted(right, key=_row_sort_key), strict=True):
        if len(a) != len(b):
            return f"{len(a)} columns vs {len(b)}"
        diff = [
            (i, x, y) for i, (x, y) in enumerate(zip(a, b, strict=True)) if not same_value(x, y)
        ]
        if diff:
            return f"column(s) {diff[:4]} in row {a}"
    return None
