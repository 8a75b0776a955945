"""Make driver values JSON-safe, and name column types portably."""

from __future__ import annotations

import math
import uuid
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any


def json_safe(value: Any) -> Any:
    """Decimal -> float (int when integral), date/datetime -> ISO 8601, NaN/inf -> None."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        # JSON encoders (orjson) stop at 64 bits: wider integers travel as floats
        return value if -(2**63) <= value < 2**63 else float(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        exponent = value.as_tuple().exponent
        if isinstance(exponent, int) and exponent >= 0:
            return json_safe(int(value))
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return str(value)


_TYPE_WORDS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("interval",), "number"),  # json_safe turns intervals into seconds
    (("bool",), "boolean"),
    (("timestamp", "datetime"), "timestamp"),
    (("date",), "date"),
    (
        ("tinyint", "smallint", "bigint", "int", "long", "short", "byte", "hugeint", "integer"),
        "integer",
    ),
    (("decimal", "numeric", "double", "float", "real"), "number"),
    (("json", "map", "struct", "array", "variant"), "json"),
)


def portable_type(native: str | None) -> str:
    """Map a driver's type name (DuckDB, Databricks, PostgreSQL) to a portable one."""
    t = (native or "").lower()
    for words, name in _TYPE_WORDS:
        if any(w in t for w in words):
            return name
    return "string"


def unique_names(names: list[str]) -> list[str]:
    """Result column names made distinct (`a, a` -> `a, a_2`), so row objects keep every
    column and match the schema."""
    seen: set[str] = set()
    out: list[str] = []
    for name in names:
        candidate, n = name, 1
        while candidate in seen:
            n += 1
            candidate = f"{name}_{n}"
        seen.add(candidate)
        out.append(candidate)
    return out
