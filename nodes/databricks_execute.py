"""databricks_execute: run the checked SQL on the warehouse (Databricks, or embedded DuckDB)."""

from __future__ import annotations

from typing import Any

import orjson
from langgraph.runtime import Runtime

from domain.access import DEFAULT_TENANT
from domain.failures import FailureKind, ResolverFailure
from graph.context import Context
from graph.state import State
from nodes._common import fail, failed, traced
from nodes._versions import stamp


def query_tags(state: State) -> dict[str, str]:
    """What the statement is for, as Databricks `query_tags` (`system.query.history`), so an
    admin can see what each widget, metric and tenant costs."""
    tags = {"app": "widget-data-resolver", "widget": str(state.get("widget_id") or "")}
    metric = state.get("metric")
    if metric is not None:
        tags["metric"] = metric.name
    access = state.get("access")
    tags["tenant"] = access.tenant if access is not None else DEFAULT_TENANT
    # why it ran: a viewer's read, a viewer's refresh=true, or a background refresh
    # (refresh-ahead, revalidation, a data change)
    tags["run"] = (
        "background" if state.get("background") else "refresh" if state.get("refresh") else "live"
    )
    return {k: v for k, v in tags.items() if v}


@traced("databricks_execute")
async def databricks_execute(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = runtime.context
    if ctx.warehouse is None:
        return fail(
            "databricks_execute", FailureKind.databricks_unavailable, "no warehouse is configured"
        )
    sql = state["generated_sql"]
    assert sql is not None, "safety_check must approve SQL before execution"
    versions = stamp(ctx, state)  # before the query: a change during it moves past the stamp
    try:
        result = await ctx.warehouse.execute(
            sql, max_rows=ctx.safety.max_rows, tags=query_tags(state)
        )
    except ResolverFailure as exc:
        return failed("databricks_execute", exc)
    size = len(orjson.dumps(result.rows))
    if size > ctx.max_result_bytes:
        return fail(
            "databricks_execute",
            FailureKind.databricks_error,
            f"result of {size} bytes is over the {ctx.max_result_bytes}-byte limit for a widget",
        )
    return {
        "rows": result.rows,
        "schema": result.schema,
        "executed": True,
        "truncated": result.truncated,
        "resolved_at": ctx.clock(),
        "outcome": ctx.warehouse.name,
    } | versions
