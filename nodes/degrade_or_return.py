"""degrade_or_return: shape the answer. A live answer is cached; a degraded one never is,
and always says so (`live_data_unavailable`, `source` = the failure kind, `error_detail`).
The LLM generation log row is written here, after the answer is decided."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from langgraph.runtime import Runtime

from graph.context import Context
from graph.state import State
from nodes._common import traced

log = logging.getLogger(__name__)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


async def write_generation_log(ctx: Context, state: State) -> None:
    generation = state.get("generation")
    if not generation or generation.get("reused") or ctx.generation_log is None:
        return
    safety = state.get("safety") or {}
    failure = state.get("failure")
    record = {k: v for k, v in generation.items() if k != "reused"}
    record |= {
        "safety_allowed": safety.get("allowed"),
        "safety_rule": safety.get("rule"),
        "failure_kind": failure["kind"] if failure else None,
    }
    await ctx.generation_log.write(record)  # never raises: it logs and drops


@traced("degrade_or_return")
async def degrade_or_return(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = runtime.context
    now = ctx.clock()
    failure = state.get("failure")
    spec = state["spec"]
    routing = state.get("routing")
    dry_run = bool(state.get("dry_run"))
    cache_hit = bool(state.get("cache_hit"))
    rows = state.get("rows", [])
    resolved_at = now if failure or dry_run else state.get("resolved_at", now)
    response: dict[str, Any] = {
        "widget_id": state["widget_id"],
        "metric_id": spec.data_intent.metric_id,
        "backend": routing.backend if routing else None,
        "source": failure["kind"] if failure else state["backend"],
        "data": rows,
        "schema": state.get("schema", []),
        "row_count": len(rows),
        "cache_hit": cache_hit,
        "freshness_seconds": round(max(0.0, now - resolved_at), 6),
        "live_data_unavailable": failure is not None,
        "executed": bool(state.get("executed")) and failure is None,
        "dry_run": dry_run,
        "generated_sql": state.get("generated_sql"),
        "error_detail": failure["detail"] if failure else None,
        "resolved_at": _iso(resolved_at),
    }
    outcome = (
        "degraded" if failure else ("dry_run" if dry_run else ("cached" if cache_hit else "live"))
    )
    if outcome == "live" and routing is not None:
        await ctx.cache.set(
            state["cache_key"],
            {
                "rows": rows,
                "schema": response["schema"],
                "generated_sql": response["generated_sql"],
                "resolved_at": resolved_at,
                "truncated": state.get("truncated", False),
            },
            routing.ttl_seconds,
        )
    if failure:
        log.warning(
            "widget %s degraded: %s (%s)", state["widget_id"], failure["kind"], failure["detail"]
        )
    await write_generation_log(ctx, state)
    return {"response": response, "outcome": outcome}
