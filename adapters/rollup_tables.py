"""The PostgreSQL side of rollups (adapters/rollups.py): registering a rollup, writing one
partition's rows, reading what is built, and a read (coverage and rows, one round trip). Each rollup's rows live in a typed table
`rollup_<name>` (created from its first partition's columns; text in the "C" collation, so
ORDER BY and comparisons are the warehouse's byte order), indexed for replacing a partition
and for the reads (the time range, then the dimensions reads filter on)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString, cast

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from adapters.pg_errors import postgres_failure
from domain.failures import WarehouseFailure
from domain.results import QueryResult
from domain.rollups import Rollup, RollupQuery

_PG_TYPES = {
    "integer": "bigint",
    "number": "numeric",
    "string": 'text COLLATE "C"',
    "timestamp": "timestamptz",
    "date": "date",
    "boolean": "boolean",
    "json": "jsonb",
}


# the read's snapshot: coverage and rows agree (a build commits both or neither)
_BEGIN = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"
_COVERAGE = (
    "SELECT r.signature, r.data_start, r.data_start_known, p.partition_start, p.built_at"
    " FROM rollups r LEFT JOIN rollup_partitions p ON p.rollup = r.name WHERE r.name = %s"
)


@dataclass(frozen=True, slots=True)
class Built:
    """One built partition: when, and from which data version of its table (None: unknown)."""

    built_at: datetime
    data_version: str | None


def _indexes(r: Rollup, names: list[str]) -> list[tuple[str, list[str]]]:
    """(name, columns) of the rollup table's indexes: the partition (replaced whole), and
    the reads' range over `bucket` (its dimensions after it, so a filtered read of a range
    is answered from the index's order)."""
    dims = [d for d in r.definition.dimensions if d in names][:4]
    return [
        (f"{r.table_name}_partition_start_idx", ["partition_start"]),
        (f"{r.table_name}_read_idx", ["bucket", *dims]),
    ]


async def write_partition(
    pool: AsyncConnectionPool,
    r: Rollup,
    start: datetime,
    end: datetime,
    result: QueryResult,
    *,
    data_version: str | None,
    build_ms: float,
) -> None:
    """Replace the partition's rows with `result`'s and record it, in one transaction."""
    names = [c.name for c in result.columns]
    table = sql.Identifier(r.table_name)
    try:
        async with pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (r.name,))
            cur = await conn.execute("SELECT signature FROM rollups WHERE name = %s", (r.name,))
            head = await cur.fetchone()
            if head is None or head[0] != r.signature:
                raise WarehouseFailure("the rollup's definition changed during the build")
            columns = sql.SQL(", ").join(
                sql.SQL("{} {}").format(
                    sql.Identifier(c.name), sql.SQL(_PG_TYPES.get(c.type, "text"))
                )
                for c in result.columns
            )
            await conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (partition_start timestamptz NOT NULL, {})"
                ).format(table, columns)
            )
            for name, cols in _indexes(r, names):
                await conn.execute(
                    sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
                        sql.Identifier(name), table, sql.SQL(", ").join(map(sql.Identifier, cols))
                    )
                )
            await conn.execute(
                sql.SQL("DELETE FROM {} WHERE partition_start = %s").format(table), (start,)
            )
            copy_sql = sql.SQL("COPY {} (partition_start, {}) FROM STDIN").format(
                table, sql.SQL(", ").join(map(sql.Identifier, names))
            )
            async with conn.cursor() as cur2, cur2.copy(copy_sql) as copy:
                for row in result.rows:
                    await copy.write_row((start, *(row[n] for n in names)))
            await conn.execute(
                "INSERT INTO rollup_partitions AS p (rollup, partition_start, partition_end,"
                " built_at, data_version, row_count, build_ms)"
                " VALUES (%s, %s, %s, now(), %s, %s, %s)"
                " ON CONFLICT (rollup, partition_start) DO UPDATE SET"
                " partition_end = excluded.partition_end, built_at = excluded.built_at,"
                " data_version = excluded.data_version, row_count = excluded.row_count,"
                " build_ms = excluded.build_ms",
                (r.name, start, end, data_version, len(result.rows), build_ms),
            )
    except psycopg.Error as exc:
        raise postgres_failure(exc, what="rollup build") from exc


async def built(pool: AsyncConnectionPool, r: Rollup, start: datetime) -> Built | None:
    """The partition starting at `start`, if built with the rollup's current definition."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT p.built_at, p.data_version FROM rollup_partitions p"
            " JOIN rollups r ON r.name = p.rollup AND r.signature = %s"
            " WHERE p.rollup = %s AND p.partition_start = %s",
            (r.signature, r.name, start),
        )
        row = await cur.fetchone()
    return Built(row[0], row[1]) if row else None


async def prepare(pool: AsyncConnectionPool, r: Rollup) -> None:
    """Register the rollup; a changed definition drops its rows and partitions."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (r.name,))
        cur = await conn.execute("SELECT signature FROM rollups WHERE name = %s", (r.name,))
        head = await cur.fetchone()
        if head is not None and head[0] == r.signature:
            return
        await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(r.table_name)))
        await conn.execute("DELETE FROM rollups WHERE name = %s", (r.name,))
        await conn.execute(
            "INSERT INTO rollups (name, signature) VALUES (%s, %s)", (r.name, r.signature)
        )


async def stored_start(pool: AsyncConnectionPool, r: Rollup) -> tuple[bool, datetime | None]:
    """(known, first time value) of the rollup's table, as recorded."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT data_start_known, data_start FROM rollups WHERE name = %s", (r.name,)
        )
        row = await cur.fetchone()
    return (bool(row[0]), row[1]) if row else (False, None)


async def read(
    conn: psycopg.AsyncConnection[Any], r: Rollup, query: RollupQuery, *, timeout_ms: int
) -> tuple[list[Any], list[dict[str, Any]], list[Any]]:
    """(coverage rows, rows, their description): in one snapshot and one round trip, the
    transaction's statements (BEGIN to COMMIT) queued in one pipeline and sent with its
    one sync (psycopg's `transaction()` in a pipeline syncs on entry, on exit and for a
    fetch inside it: four round trips). A failure leaves no transaction open."""
    try:
        async with conn.cursor(row_factory=dict_row) as cur:
            head = await _sent(conn, cur, r, query, timeout_ms)
            # the pipeline's sync has brought every result: no I/O from here
            return await head.fetchall(), await cur.fetchall(), list(cur.description or [])
    except BaseException:
        if conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
            with contextlib.suppress(psycopg.Error):
                await conn.rollback()  # else the pool rolls it back, with a warning
        raise


async def _sent(
    conn: psycopg.AsyncConnection[Any],
    cur: psycopg.AsyncCursor[Any],
    r: Rollup,
    query: RollupQuery,
    timeout_ms: int,
) -> psycopg.AsyncCursor[Any]:
    """The read's statements through one pipeline; leaving it sends them with one sync and
    brings every result back. Raises the first failure, not the `pipeline aborted` that an
    early one leaves for the statements after it."""
    failure: psycopg.Error | None = None
    try:
        async with conn.pipeline():
            try:
                await conn.execute(_BEGIN)
                await conn.execute(
                    cast(LiteralString, f"SET LOCAL statement_timeout = {timeout_ms}")
                )
                head = await conn.execute(_COVERAGE, (r.name,))
                if query.template:  # prepared by the server after a few runs
                    await cur.execute(cast(LiteralString, query.template), query.params())
                else:
                    await cur.execute(cast(LiteralString, query.sql))
                await conn.execute("COMMIT")
            except psycopg.Error as exc:  # an answer back early failed
                failure = exc
    except psycopg.Error:
        if failure is None:
            raise
    if failure is not None:
        raise failure
    return head
