"""An embedded DuckDB warehouse holding the demo lakehouse (used when no Databricks is set).

It takes the same (already safety-checked) Databricks SQL a real warehouse would, and
translates it with `adapters.transpile.to_duckdb`. Guards beyond the safety layer:

* the lakehouse is built into a DuckDB file, which is then opened READ-ONLY: no statement
  can change the demo tables (only the session's own temp objects);
* `enable_external_access` is off (no file/network reads or writes, COPY, ATTACH,
  INSTALL) and the configuration is locked, so a statement cannot turn either back on;
* the transpiler accepts only a single query.

Every statement sent to DuckDB is logged (Databricks and DuckDB text) in a bounded,
thread-safe log, and `table_checksums()` fingerprints the tables, so the eval suite can
prove that nothing harmful ran.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import sqlglot
from sqlglot import exp

from adapters.embedded_rule import VerifiedSet
from adapters.lakehouse import TABLES, build_lakehouse
from adapters.transpile import EmbeddedUnsupported, TranspileError, to_duckdb
from domain.failures import FailureKind, WarehouseFailure
from domain.jsonsafe import json_safe, portable_type, unique_names
from domain.ports import TableSchema
from domain.results import Column, QueryResult

STATEMENT_LOG_SIZE = 2000


class DuckDBWarehouse:
    """`domain.ports.Warehouse` over an embedded, read-only DuckDB demo lakehouse."""

    name = "duckdb"

    def __init__(
        self,
        *,
        now: datetime | None = None,
        path: str | None = None,
        statement_timeout_s: float = 10.0,
        statement_log_size: int = STATEMENT_LOG_SIZE,
        verified: VerifiedSet | None = None,
        appendable: bool = False,
    ) -> None:
        """Build the lakehouse for `now` (default: the current time) into `path` (default:
        a temporary file removed on close), then reopen it read-only. `appendable` keeps
        the file so that `append` can add rows (tests, benches)."""
        self.now = (now or datetime.now(UTC)).astimezone(UTC)
        self.statement_timeout_s = statement_timeout_s
        self.verified = verified  # None: the committed verified set (adapters/embedded_rule.py)
        self._lock = threading.Lock()
        self._log: deque[str] = deque(maxlen=statement_log_size)
        tmpdir = None if path else tempfile.mkdtemp(prefix="wdr-lakehouse-")
        self.path = path or str(Path(tmpdir or ".") / "lakehouse.duckdb")
        with duckdb.connect(self.path) as builder:
            build_lakehouse(builder, now=self.now)
            builder.execute("CHECKPOINT")
        self._con = _open_read_only(self.path)
        self._tmpdir, self._appendable = tmpdir, appendable
        self._versions: dict[str, int] = {name.lower(): 0 for name in TABLES}
        if tmpdir and not appendable:
            # The open connection keeps the data; unlinking now leaves nothing behind even
            # if the process is killed. The directory stays for DuckDB's spill files.
            Path(self.path).unlink()
        self._finalizer = weakref.finalize(self, _release, self._con, tmpdir)

    # ------------------------------------------------------------------ protocol

    async def execute(
        self, sql: str, *, max_rows: int, tags: Mapping[str, str] | None = None
    ) -> QueryResult:  # tags: DuckDB keeps no query history to label
        """Run one Databricks query; at most `max_rows` rows (truncated flags more)."""
        try:
            duck_sql = to_duckdb(sql, self.verified)
        except EmbeddedUnsupported as e:
            raise WarehouseFailure(str(e)) from e
        except TranspileError as e:
            raise WarehouseFailure(f"could not translate the query for DuckDB: {e}") from e
        return await asyncio.to_thread(self._run, sql, duck_sql, max_rows)

    async def ping(self) -> bool:
        def _ping() -> bool:
            cur = self._cursor()
            try:
                return cur.execute("SELECT 1").fetchall() == [(1,)]
            except duckdb.Error:
                return False
            finally:
                cur.close()

        if not self._finalizer.alive:
            return False
        return await asyncio.to_thread(_ping)

    async def describe(self, tables: Sequence[str]) -> tuple[TableSchema, ...]:
        """The columns of `tables` as DuckDB's own catalog reports them, in Databricks type
        names (the dialect the model writes); a table it does not hold is left out."""
        return await asyncio.to_thread(self._describe, tuple(tables))

    def _describe(self, tables: tuple[str, ...]) -> tuple[TableSchema, ...]:
        try:
            cur = self._cursor()
        except duckdb.Error as e:  # closed: a registry reload racing the shutdown
            raise WarehouseFailure(f"DuckDB catalog read failed: {e}") from e
        try:
            out = []
            for name in tables:
                parts = name.split(".")
                try:
                    rows = cur.execute(
                        "SELECT column_name, data_type FROM information_schema.columns"
                        " WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                        parts[-2:],
                    ).fetchall()
                except duckdb.Error as e:  # e.g. the warehouse closing under a late reload
                    raise WarehouseFailure(f"DuckDB catalog read failed: {e}") from e
                if rows and len(parts) == 3:
                    cols = tuple((str(c), databricks_type(str(t))) for c, t in rows)
                    out.append(TableSchema(name=name, columns=cols))
            return tuple(out)
        finally:
            cur.close()

    # ------------------------------------------------------------------ data versions

    def data_version(self, table: str) -> int | None:
        """The table's data version (domain/data_versions.py): 0 as built, +1 per `append`;
        None for a table the lakehouse does not hold."""
        return self._versions.get(table.lower())

    def append(self, table: str, rows: list[dict[str, Any]]) -> int:
        """Insert `rows` (column -> value) into a demo table and move its version; returns
        the new version. The read-only connection is reopened around the write (a statement
        running at that moment fails, as on a warehouse restart)."""
        if not self._appendable:
            raise RuntimeError("this lakehouse was opened without appendable=True")
        if table.lower() not in self._versions:
            raise ValueError(f"no demo table {table!r}")
        with self._lock:
            self._finalizer.detach()
            self._con.close()
            try:
                if rows:
                    names = list(rows[0])
                    with duckdb.connect(self.path) as rw:
                        rw.execute("SET TimeZone = 'UTC'")
                        rw.executemany(
                            f"INSERT INTO {table} ({', '.join(names)}) "
                            f"VALUES ({', '.join('?' for _ in names)})",
                            [[r[n] for n in names] for r in rows],
                        )
                        rw.execute("CHECKPOINT")
            finally:
                self._con = _open_read_only(self.path)
                self._finalizer = weakref.finalize(self, _release, self._con, self._tmpdir)
            self._versions[table.lower()] += 1
            return self._versions[table.lower()]

    # ------------------------------------------------------------------ evidence

    @property
    def executed_statements(self) -> list[str]:
        """Statements sent to DuckDB, oldest first: for each, the Databricks SQL as given,
        then the DuckDB SQL that ran (bounded to the last `statement_log_size` entries)."""
        with self._lock:
            return list(self._log)

    def table_checksums(self) -> dict[str, str]:
        """`<row count>:<hash of contents>` per demo table (order-independent, stable)."""
        cur = self._cursor()
        try:
            out = {}
            for name in TABLES:
                row = cur.execute(
                    f"SELECT count(*), coalesce(sum(hash(t)::HUGEINT), 0) FROM {name} AS t"
                ).fetchone()
                assert row is not None
                out[name] = f"{row[0]}:{int(row[1]) % 2**64:016x}"
            return out
        finally:
            cur.close()

    def close(self) -> None:
        """Close the connection and remove the temporary lakehouse file, if any."""
        self._finalizer()

    # ------------------------------------------------------------------ internals

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            return self._con.cursor()

    def _record(self, sql: str, duck_sql: str) -> None:
        with self._lock:
            self._log.append(sql)
            self._log.append(duck_sql)

    def _run(self, sql: str, duck_sql: str, max_rows: int) -> QueryResult:
        cur = self._cursor()
        timer = threading.Timer(self.statement_timeout_s, cur.interrupt)
        timer.daemon = True
        self._record(sql, duck_sql)
        started = time.perf_counter()
        try:
            timer.start()
            cur.execute(duck_sql)
            description = cur.description or []
            fetched = cur.fetchmany(max_rows + 1)
        except duckdb.InterruptException as e:
            raise WarehouseFailure(
                f"query exceeded the {self.statement_timeout_s:g}s statement timeout",
                kind=FailureKind.databricks_timeout,
            ) from e
        except duckdb.Error as e:
            raise WarehouseFailure(f"DuckDB: {e}") from e
        finally:
            timer.cancel()
            cur.close()
        elapsed_ms = (time.perf_counter() - started) * 1000
        names = unique_names([d[0] for d in description])
        columns = [
            Column(name=n, type=portable_type(str(d[1])))
            for n, d in zip(names, description, strict=True)
        ]
        rows = [_row(names, r) for r in fetched[:max_rows]]
        return QueryResult(
            rows=rows,
            columns=columns,
            sql=sql,
            truncated=len(fetched) > max_rows,
            meta={
                "engine": "duckdb",
                "duckdb_sql": duck_sql,
                "duckdb_types": [str(d[1]) for d in description],
                "elapsed_ms": round(elapsed_ms, 3),
            },
        )


def databricks_type(duckdb_type: str) -> str:
    """A DuckDB column type spelled as Databricks names it (VARCHAR -> STRING)."""
    try:
        spelled = exp.DataType.build(duckdb_type, dialect="duckdb").sql("databricks")
    except sqlglot.errors.ParseError:
        return duckdb_type
    return spelled.replace(", ", ",")


def _row(names: list[str], values: tuple[Any, ...]) -> dict[str, Any]:
    return {name: json_safe(v) for name, v in zip(names, values, strict=True)}


MEMORY_LIMIT = "1GB"  # a runaway query fails with an out-of-memory error, not the host
THREADS = 2


def _open_read_only(path: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(path, read_only=True)
    con.execute("SET GLOBAL TimeZone = 'UTC'")
    con.execute(f"SET GLOBAL memory_limit = '{MEMORY_LIMIT}'")
    con.execute(f"SET GLOBAL threads = {THREADS}")
    con.execute("SET GLOBAL enable_external_access = false")
    con.execute("SET GLOBAL lock_configuration = true")
    return con


def _release(con: duckdb.DuckDBPyConnection, tmpdir: str | None) -> None:
    con.close()
    if tmpdir:
        shutil.rmtree(tmpdir, ignore_errors=True)
