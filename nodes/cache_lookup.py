"""cache_lookup: serve a fresh cached answer; refresh and dry runs bypass the read."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from graph.context import Context
from graph.state import State
from nodes._common import traced


@traced("cache_lookup")
async def cache_lookup(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    if state.get("dry_run"):
        return {"cache_hit": False, "outcome": "bypass_dry_run"}
    if state.get("refresh"):
        return {"cache_hit": False, "outcome": "bypass_refresh"}
    entry = await runtime.context.cache.get(state["cache_key"])
    if entry is None:
        return {"cache_hit": False, "outcome": "miss"}
    return {
        "cache_hit": True,
        "rows": entry["rows"],
        "schema": entry["schema"],
        "generated_sql": entry.get("generated_sql"),
        "resolved_at": entry["resolved_at"],
        "truncated": entry.get("truncated", False),
        "executed": True,
        "outcome": "hit",
    }
