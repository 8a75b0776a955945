"""postgres_query: run the metric's allowlisted, parameterized query: for the widget's own
intent, or for a question sql_generate grounded in a PostgreSQL metric (state `grounded`)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from domain.access import UNRESTRICTED
from domain.failures import FailureKind, ResolverFailure
from graph.context import Context
from graph.state import State
from nodes._common import fail, failed, traced
from nodes._versions import stamp


@traced("postgres_query")
async def postgres_query(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = runtime.context
    metric = state["metric"]
    intent = state.get("grounded") or state["spec"].data_intent
    if ctx.postgres is None:
        return fail(
            "postgres_query", FailureKind.postgres_unavailable, "no PostgreSQL is configured"
        )
    if not ctx.postgres.has_query(metric):
        return fail(
            "postgres_query",
            FailureKind.postgres_unmapped,
            f"metric {metric.name!r} is routed to postgres but has no allowlisted query",
        )
    row_filter = (state.get("access") or UNRESTRICTED).series_filter(metric.name)
    now = ctx.clock()
    try:
        if state.get("dry_run"):
            sql = ctx.postgres.render_sql(metric, intent, now=now, row_filter=row_filter)
            return {
                "generated_sql": sql,
                "executed": False,
                "rows": [],
                "schema": [],
                "outcome": "dry_run",
            }
        versions = stamp(ctx, state)  # before the query (see nodes/_versions.py)
        result = await ctx.postgres.run_metric(metric, intent, now=now, row_filter=row_filter)
    except ResolverFailure as exc:
        return failed("postgres_query", exc)
    return {
        "rows": result.rows,
        "schema": result.schema,
        "generated_sql": result.sql,
        "executed": True,
        "truncated": result.truncated,
        "resolved_at": ctx.clock(),
        "outcome": "ok",
    } | versions
