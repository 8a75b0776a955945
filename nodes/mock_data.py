"""mock_data: a failure hands the widget's baked-in mock rows on, always flagged."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from domain.jsonsafe import json_safe
from graph.context import Context
from graph.state import State
from nodes._common import traced


def _kind(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, (dict, list)):
        return "json"
    return "string"


def infer_schema(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Every column of the mock rows, in first-seen order, with one type that fits all its
    values (integer and number make number; anything else mixed makes string)."""
    types: dict[str, str | None] = {}
    for row in rows:
        for name, value in row.items():
            kind, seen = _kind(value), types.get(name)
            if name not in types or seen is None:
                types[name] = kind
            elif kind is not None and kind != seen:
                types[name] = "number" if {kind, seen} == {"integer", "number"} else "string"
    return [{"name": n, "type": t or "string"} for n, t in types.items()]


@traced("mock_data")
async def mock_data(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    rows = [json_safe(r) for r in state["spec"].mock_data]
    return {
        "rows": rows,
        "schema": infer_schema(rows),
        "cache_hit": False,
        "executed": False,
        "outcome": "mock",
    }
