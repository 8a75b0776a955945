"""Plain result types passed between adapters and nodes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str  # a portable type name: string, integer, number, boolean, date, timestamp, json

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type}


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Rows are JSON-safe dicts (Decimal -> float, date/timestamp -> ISO 8601 strings)."""

    rows: list[dict[str, Any]]
    columns: list[Column]
    sql: str | None = None
    truncated: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def schema(self) -> list[dict[str, str]]:
        return [c.as_dict() for c in self.columns]
