"""cache_lookup: serve a fresh cached answer; refresh and dry runs bypass the read.

A forced refresh within `refresh_min_interval_s` of the entry's live resolution is
answered from that resolution (`refresh=true` cannot hammer a backend)."""

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
    ctx = runtime.context
    refresh = bool(state.get("refresh"))
    if refresh and ctx.refresh_min_interval_s <= 0:
        return {"cache_hit": False, "outcome": "bypass_refresh"}
    entry = await ctx.cache.get(state["cache_key"])
    if entry is None:
        return {"cache_hit": False, "outcome": "bypass_refresh" if refresh else "miss"}
    if refresh and ctx.clock() - entry["resolved_at"] >= ctx.refresh_min_interval_s:
        return {"cache_hit": False, "outcome": "bypass_refresh"}
    return {
        "cache_hit": True,
        "rows": entry["rows"],
        "schema": entry["schema"],
        "generated_sql": entry.get("generated_sql"),
        "resolved_at": entry["resolved_at"],
        "truncated": entry.get("truncated", False),
        "executed": True,
        "outcome": "refresh_debounced" if refresh else "hit",
    }
