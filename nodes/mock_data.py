"""mock_data: a failure hands on the last good answer for the same key when one is inside
its stale-if-error window, else the widget's baked-in mock rows; either way flagged."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from domain.freshness import Policy, usable_as_last_good
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
    last_good = state.get("last_good")
    routing = state.get("routing")
    if (
        last_good is not None
        and routing is not None
        and usable_as_last_good(last_good, runtime.context.clock(), Policy.of(routing))
    ):
        # a live answer for the same key, inside its stale-if-error window, beats the mock
        return {
            "rows": last_good["rows"],
            "schema": last_good.get("schema", []),
            "generated_sql": last_good.get("generated_sql"),
            "trust": last_good.get("trust"),
            "verification": last_good.get("verification"),
            "resolved_at": last_good["resolved_at"],
            "truncated": last_good.get("truncated", False),
            "cache_hit": True,
            "executed": True,
            "fallback": "last_good",
            "outcome": "last_good",
        }
    rows = [json_safe(r) for r in state["spec"].mock_data]
    return {
        "rows": rows,
        "schema": infer_schema(rows),
        "cache_hit": False,
        "executed": False,
        "fallback": "mock",
        "outcome": "mock",
    }
