"""Delta table versions for the Statement Execution fake: `DESCRIBE HISTORY <table>
[LIMIT n]` answered with Delta-shaped rows (version, timestamp, operation, ...), newest
first. Every table starts at version 0 (its CREATE TABLE AS SELECT); each `write` (the
fake's `append`) is one more version."""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime
from typing import Any

import duckdb

from fakes.sea_wire import sea_column, sea_value

_HISTORY_RE = re.compile(
    r"^\s*DESCRIBE\s+HISTORY\s+([`\w.]+)(?:\s+LIMIT\s+(\d+))?\s*;?\s*$", re.IGNORECASE
)
# DESCRIBE HISTORY's columns (a subset of Delta's, in its order) and their DuckDB types
COLUMNS = (
    ("version", "BIGINT"),
    ("timestamp", "TIMESTAMP"),
    ("userId", "VARCHAR"),
    ("userName", "VARCHAR"),
    ("operation", "VARCHAR"),
    ("operationParameters", "VARCHAR"),
    ("readVersion", "BIGINT"),
    ("isolationLevel", "VARCHAR"),
    ("isBlindAppend", "BOOLEAN"),
    ("operationMetrics", "VARCHAR"),
    ("engineInfo", "VARCHAR"),
)
_CREATED = datetime(2026, 1, 1, tzinfo=UTC)


def is_history_probe(statement: str) -> bool:
    return _HISTORY_RE.match(statement) is not None


def insert_rows(db: duckdb.DuckDBPyConnection, table: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    names = list(rows[0])
    cur = db.cursor()
    try:
        cur.executemany(
            f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",
            [[r[n] for n in names] for r in rows],
        )
    finally:
        cur.close()


class DeltaHistory:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        # lower-case three-part name -> [(version, when, operation, rows written)]
        self._tables: dict[str, list[tuple[int, datetime, str, int]]] = {}

    def version(self, table: str) -> int:
        with self._lock:
            history = self._tables.get(table.lower())
            return history[-1][0] if history else 0

    def write(self, table: str, rows: int) -> int:
        with self._lock:
            history = self._tables.setdefault(table.lower(), [])
            version = (history[-1][0] if history else 0) + 1
            history.append((version, datetime.now(UTC), "WRITE", rows))
            return version

    def answer(self, statement: str) -> tuple[list[dict[str, Any]], list[list[Any]]] | None:
        """(manifest columns, JSON_ARRAY rows) for a DESCRIBE HISTORY statement, else None."""
        m = _HISTORY_RE.match(statement)
        if m is None:
            return None
        name, limit = m.group(1).replace("`", "").lower(), m.group(2)
        with self._lock:
            history = list(self._tables.get(name, []))
        history = [(0, _CREATED, "CREATE TABLE AS SELECT", 0), *history]
        newest = list(reversed(history))
        rows = []
        for version, when, op, n in newest[: int(limit)] if limit else newest:
            params = json.dumps({"mode": "Append"}) if op == "WRITE" else "{}"
            metrics = json.dumps({"numOutputRows": str(n)})
            rows.append(
                [version, when, "1", "fake@example.com", op, params,
                 version - 1 if version else None, "WriteSerializable", op == "WRITE",
                 metrics, "fakes.databricks_sea"]
            )  # fmt: skip
        columns = [sea_column(n, t, i) for i, (n, t) in enumerate(COLUMNS)]
        return columns, [[sea_value(v) for v in row] for row in rows]
