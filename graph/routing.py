"""Conditional edges. Every failure goes to `mock_data`, which hands a flagged result on.

The routers are `async def` so LangGraph calls them on the event loop: it runs a plain
`def` path function in a worker thread, two thread hops on every cache hit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

from langgraph.graph import END

from graph.state import State


async def route_after_route(state: State) -> Literal["cache_lookup", "mock_data"]:
    return "mock_data" if state.get("failure") else "cache_lookup"


async def route_after_cache_lookup(
    state: State,
) -> Literal["degrade_or_return", "mock_data", "postgres_query", "rollup_query", "sql_generate"]:
    if state.get("failure"):  # the backend failed a moment ago, or for the leader we followed
        return "mock_data"
    if state.get("cache_hit") or state.get("shared"):
        return "degrade_or_return"
    if state["backend"] == "postgres":
        return "postgres_query"
    # a compiled warehouse metric some rollup declares: try the rollup first (not a dry run:
    # that shows the warehouse SQL)
    if state.get("rollup_candidates") and not state.get("dry_run"):
        return "rollup_query"
    return "sql_generate"


async def route_after_rollup_query(state: State) -> Literal["degrade_or_return", "sql_generate"]:
    return "degrade_or_return" if state.get("rollup") else "sql_generate"


async def route_after_postgres_query(state: State) -> Literal["degrade_or_return", "mock_data"]:
    return "mock_data" if state.get("failure") else "degrade_or_return"


async def route_after_sql_generate(
    state: State,
) -> Literal["safety_check", "postgres_query", "mock_data"]:
    if state.get("failure"):
        return "mock_data"
    # a question grounded in a PostgreSQL metric: its allowlisted query, not warehouse SQL
    return "postgres_query" if state.get("grounded") is not None else "safety_check"


async def route_after_safety_check(
    state: State,
) -> Literal["databricks_execute", "degrade_or_return", "mock_data"]:
    if state.get("failure"):
        return "mock_data"
    return "degrade_or_return" if state.get("dry_run") else "databricks_execute"


async def route_after_databricks_execute(state: State) -> Literal["degrade_or_return", "mock_data"]:
    return "mock_data" if state.get("failure") else "degrade_or_return"


# What follows each node: its router, or the one node (or END) it always hands on to. The
# builder adds these edges; the runner (graph/runner.py) walks the same table.
NEXT: dict[str, Callable[[State], Awaitable[str]] | str] = {
    "route": route_after_route,
    "cache_lookup": route_after_cache_lookup,
    "rollup_query": route_after_rollup_query,
    "postgres_query": route_after_postgres_query,
    "sql_generate": route_after_sql_generate,
    "safety_check": route_after_safety_check,
    "databricks_execute": route_after_databricks_execute,
    "mock_data": "degrade_or_return",
    "degrade_or_return": END,
}
