"""The Statement Execution wire records and the DuckDB -> SEA type and value mapping used
by `fakes.databricks_sea.FakeSeaServer`."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from typing import Any

import duckdb

# ------------------------------------------------------------------ records


@dataclass
class RecordedRequest:
    method: str
    path: str
    authorization: str | None
    user_agent: str | None
    body: dict[str, Any]
    status: int = 0


@dataclass
class Session:
    session_id: str
    warehouse_id: str
    session_confs: dict[str, str]
    catalog: str | None
    schema: str | None
    open: bool = True


@dataclass
class Statement:
    """One statement the warehouse received, with its outcome."""

    statement_id: str
    session_id: str
    statement: str
    request: dict[str, Any]
    transpiled: str | None = None
    ready_at: float = 0.0
    columns: list[dict[str, Any]] = field(default_factory=list)
    data: list[list[str | None]] = field(default_factory=list)
    truncated: bool = False
    error: dict[str, str] | None = None
    sql_state: str | None = None
    canceled: threading.Event = field(default_factory=threading.Event)
    closed: bool = False

    def state(self, now: float) -> str:
        if self.closed:
            return "CLOSED"
        if self.canceled.is_set():
            return "CANCELED"
        if now < self.ready_at:
            return "RUNNING"
        return "FAILED" if self.error is not None else "SUCCEEDED"


# ------------------------------------------------------------------ type / value mapping


def sea_column(name: str, duck_type: str, position: int) -> dict[str, Any]:
    """A manifest column in the SEA vocabulary for a DuckDB type name."""
    t = duck_type.upper().strip()
    col: dict[str, Any] = {"name": name, "position": position, "type_text": t}
    m = re.fullmatch(r"DECIMAL\((\d+),\s*(\d+)\)", t)
    if m:
        precision, scale = int(m.group(1)), int(m.group(2))
        col.update(type_name="DECIMAL", type_precision=precision, type_scale=scale)
        col["type_text"] = f"DECIMAL({precision},{scale})"
        return col
    if t.endswith("]"):
        name_ = "ARRAY"
    elif t.startswith("STRUCT"):
        name_ = "STRUCT"
    elif t.startswith("MAP"):
        name_ = "MAP"
    else:
        name_ = {
            "BOOLEAN": "BOOLEAN",
            "TINYINT": "BYTE",
            "SMALLINT": "SHORT",
            "INTEGER": "INT",
            "BIGINT": "LONG",
            "UTINYINT": "SHORT",
            "USMALLINT": "INT",
            "UINTEGER": "LONG",
            "UBIGINT": "LONG",
            "FLOAT": "FLOAT",
            "DOUBLE": "DOUBLE",
            "DATE": "DATE",
            "TIMESTAMP": "TIMESTAMP",
            "TIMESTAMP WITH TIME ZONE": "TIMESTAMP",
            "TIMESTAMP_S": "TIMESTAMP",
            "TIMESTAMP_MS": "TIMESTAMP",
            "TIMESTAMP_NS": "TIMESTAMP",
            "BLOB": "BINARY",
            "INTERVAL": "INTERVAL",
            "HUGEINT": "DECIMAL",
        }.get(t, "STRING")
    col["type_name"] = name_
    col["type_text"] = name_ if name_ not in ("ARRAY", "STRUCT", "MAP") else t
    if t == "HUGEINT":
        col.update(type_precision=38, type_scale=0, type_text="DECIMAL(38,0)")
    if name_ == "INTERVAL":
        col["type_interval_type"] = "DAY TO SECOND"
    return col


def sea_value(value: Any) -> str | None:
    """Render one DuckDB value the way JSON_ARRAY results carry it: a string or null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat(timespec="milliseconds") + "Z"
    if isinstance(value, (date, dtime)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str)
    return str(value)


_DUCK_ERRORS: tuple[tuple[type[Exception], str, str], ...] = (
    (duckdb.CatalogException, "TABLE_OR_VIEW_NOT_FOUND", "42P01"),
    (duckdb.BinderException, "UNRESOLVED_COLUMN", "42703"),
    (duckdb.ParserException, "PARSE_SYNTAX_ERROR", "42601"),
    (duckdb.ConversionException, "CAST_INVALID_INPUT", "22018"),
)


def _duck_error(exc: duckdb.Error) -> tuple[str, str]:
    for cls, condition, sql_state in _DUCK_ERRORS:
        if isinstance(exc, cls):
            return condition, sql_state
    return "INTERNAL_ERROR", "XX000"


def _seconds(wait_timeout: str | None) -> float:
    m = re.fullmatch(r"(\d+)s", (wait_timeout or "10s").strip())
    return float(m.group(1)) if m else 10.0
