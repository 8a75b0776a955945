"""Conditional edges. Every failure goes to `mock_data`, which hands a flagged result on."""

from __future__ import annotations

from typing import Literal

from graph.state import State


def route_after_route(state: State) -> Literal["cache_lookup", "mock_data"]:
    return "mock_data" if state.get("failure") else "cache_lookup"


def route_after_cache_lookup(
    state: State,
) -> Literal["degrade_or_return", "mock_data", "postgres_query", "sql_generate"]:
    if state.get("failure"):  # the backend failed a moment ago, or for the leader we followed
        return "mock_data"
    if state.get("cache_hit") or state.get("shared"):
        return "degrade_or_return"
    return "postgres_query" if state["backend"] == "postgres" else "sql_generate"


def route_after_postgres_query(state: State) -> Literal["degrade_or_return", "mock_data"]:
    return "mock_data" if state.get("failure") else "degrade_or_return"


def route_after_sql_generate(state: State) -> Literal["safety_check", "mock_data"]:
    return "mock_data" if state.get("failure") else "safety_check"


def route_after_safety_check(
    state: State,
) -> Literal["databricks_execute", "degrade_or_return", "mock_data"]:
    if state.get("failure"):
        return "mock_data"
    return "degrade_or_return" if state.get("dry_run") else "databricks_execute"


def route_after_databricks_execute(state: State) -> Literal["degrade_or_return", "mock_data"]:
    return "mock_data" if state.get("failure") else "degrade_or_return"
