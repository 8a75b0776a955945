"""mock_data: a failure hands the widget's baked-in mock rows on, always flagged."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from adapters.jsonsafe import json_safe
from graph.context import Context
from graph.state import State
from nodes._common import traced


def infer_schema(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    names: dict[str, str] = {}
    for row in rows:
        for name, value in row.items():
            if name in names and names[name] != "string":
                continue
            if isinstance(value, bool):
                names[name] = "boolean"
            elif isinstance(value, int):
                names[name] = "integer"
            elif isinstance(value, float):
                names[name] = "number"
            else:
                names[name] = "string"
    return [{"name": n, "type": t} for n, t in names.items()]


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
