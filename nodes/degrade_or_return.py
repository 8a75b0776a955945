"""degrade_or_return: shape the answer. A live answer is cached (with its freshness windows);
a degraded one never is, and always says so (`live_data_unavailable`, `source` = the failure
kind, `error_detail`); a last good answer also says `stale` and its true age. A failed
backend query leaves the entry alone and writes a failure note beside it. The lease this
run led under is released by its scope once the run ends (graph/runner.py), so its
followers find the answer in the cache. The LLM generation log row is written here, after the answer is decided."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Literal

from langgraph.runtime import Runtime

from domain.freshness import Freshness, Policy, failure_note, failure_note_key, make_entry
from graph.context import Context
from graph.state import State
from nodes._common import traced
from sqlsafety.approximate import approximation

log = logging.getLogger(__name__)

# every outcome degrade_or_return reports (graph/observe.py decodes them)
AnswerOutcome = Literal["live", "cached", "shared", "dry_run", "degraded", "last_good"]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


async def write_generation_log(ctx: Context, state: State) -> None:
    generation = state.get("generation")
    if not generation or generation.get("reused") or ctx.generation_log is None:
        return
    safety = state.get("safety")
    failure = state.get("failure")
    record: dict[str, Any] = {k: v for k, v in generation.items() if k != "reused"}
    record |= {
        "safety_allowed": safety["allowed"] if safety else None,
        "safety_rule": safety["rule"] if safety else None,
        "failure_kind": failure["kind"] if failure else None,
    }
    await ctx.generation_log.write(record)  # never raises: it logs and drops


def approximate_fields(sql: str | None) -> dict[str, Any]:
    """`approximate` and `approximation` of an answer whose SQL is `sql`."""
    found = approximation(sql)
    return {
        "approximate": found.approximate,
        "approximation": {"functions": list(found.functions), "columns": list(found.columns)}
        if found.approximate
        else None,
    }


@traced("degrade_or_return")
async def degrade_or_return(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = runtime.context
    now = ctx.clock()
    failure = state.get("failure")
    spec = state["spec"]
    routing = state.get("routing")
    dry_run = bool(state.get("dry_run"))
    cache_hit = bool(state.get("cache_hit"))
    last_good = state.get("fallback") == "last_good"
    rows = state.get("rows", [])
    shows_real_data = failure is None or last_good
    resolved_at = state.get("resolved_at", now) if shows_real_data and not dry_run else now
    stale = bool(state.get("stale")) or last_good
    rollup = state.get("rollup") if shows_real_data and not dry_run else None
    # refresh=true within REFRESH_MIN_INTERVAL_S of the live answer: that answer, said so
    debounced = any(
        t["node"] == "cache_lookup" and t["outcome"] == "refresh_debounced"
        for t in state.get("trace", [])
    )
    response: dict[str, Any] = {
        "widget_id": state["widget_id"],
        "metric_id": spec.data_intent.metric_id,
        "backend": routing.backend if routing else None,
        "source": failure["kind"] if failure else ("rollup" if rollup else state["backend"]),
        "data": rows,
        "schema": state.get("schema", []),
        "row_count": len(rows),
        "cache_hit": cache_hit,
        "freshness_seconds": round(max(0.0, now - resolved_at), 6),
        "stale": stale,
        "stale_reason": (failure["kind"] if failure else state.get("stale_reason"))
        if stale
        else None,
        "live_data_unavailable": failure is not None,
        "executed": bool(state.get("executed")) and shows_real_data,
        "dry_run": dry_run,
        "generated_sql": state.get("generated_sql"),
        "error_detail": failure["detail"] if failure else None,
        "resolved_at": _iso(resolved_at),
        # read from a rollup: which one, and how old its data is
        "rollup": {
            "name": rollup["name"],
            "built_at": _iso(rollup["built_at"]),
            "data_age_s": round(max(0.0, now - rollup["built_at"]), 3),
            "range_widened_to": _iso(widened) if (widened := rollup.get("widened_to")) else None,
        }
        if rollup
        else None,
        # a free-text question's answer: how far it can be trusted (null otherwise)
        "trust": (state.get("trust") or "model_written_unverified")
        if spec.data_intent.question and shows_real_data
        else None,
        # the executed SQL calls an approximate aggregate (either warehouse): which, and
        # the columns it feeds (sqlsafety/approximate.py)
        **approximate_fields(state.get("generated_sql") if shows_real_data else None),
        "verification": None,
        "refresh_debounced": debounced,
        "refresh_retry_after_s": round(
            max(0.0, ctx.refresh_min_interval_s - (now - resolved_at)), 3
        )
        if debounced
        else None,
    }
    if response["trust"] == "verified":  # who verified it, and when
        response["verification"] = state.get("verification")
    outcome: AnswerOutcome
    if failure:
        outcome = "last_good" if last_good else "degraded"
    elif dry_run:
        outcome = "dry_run"
    else:
        outcome = "cached" if cache_hit else ("shared" if state.get("shared") else "live")
    update: dict[str, Any] = {"response": response, "outcome": outcome}
    key = state.get("cache_key")
    if routing is not None and key is not None and not dry_run:
        policy = Policy.of(routing)
        if outcome == "live":
            entry = make_entry(
                rows=rows,
                schema=response["schema"],
                generated_sql=response["generated_sql"],
                truncated=state.get("truncated", False),
                resolved_at=resolved_at,
                policy=policy,
            )
            if rollup:
                entry["rollup"] = rollup
            if response["trust"]:
                entry["trust"] = response["trust"]
            if response["verification"]:
                entry["verification"] = response["verification"]
            retention = policy.retention_s
            if state.get("data_versions") and ctx.data_versions is not None:
                # fresh while its data versions hold (domain/data_versions.py)
                entry["versions"] = state["data_versions"]
                retention = max(retention, ctx.data_versions.retention_s)
            # the entry, and the end of a failure note beside it: one round trip
            notes = (failure_note_key(key),) if policy.ttl_s > 0 else ()
            await ctx.cache.set(key, entry, retention, drop=notes)
        elif failure and failure["node"] not in ("route", "cache_lookup"):
            # this run queried the backend and it failed: never touch the entry, note the
            # failure so every instance answers from the last good entry until the retry
            note = failure_note(
                kind=failure["kind"],
                detail=failure["detail"],
                now=now,
                backoff_s=ctx.failure_backoff_s,
            )
            await ctx.cache.set(failure_note_key(key), note, policy.retention_s)
        shown = state if shows_real_data else {}
        update["freshness"] = Freshness(
            key=key,
            expires_at=(shown.get("resolved_at", now) + policy.ttl_s) if shown else None,
            ttl_s=policy.ttl_s,
            revalidate=bool(state.get("revalidate")),
            live=outcome in ("live", "shared"),
            hit=outcome == "cached",
            skipped=bool(state.get("skipped")),
            versions=shown.get("data_versions") if shown else None,
        )
    if failure:
        # a WARNING per failure that happened in this run; an answer that only took over a
        # failure another run met and logged (a failure note, a lease leader's failure) is
        # counted in wdr_resolutions_total and logged at DEBUG, not once per viewer
        # the kind, never the detail: a warehouse's or database's error text quotes the
        # statement's literals and row values (the caller gets it in its answer)
        log.log(
            logging.DEBUG if failure["node"] == "cache_lookup" else logging.WARNING,
            "widget %s %s: %s (in %s)",
            state["widget_id"],
            "answered from its last good entry" if last_good else "degraded",
            failure["kind"],
            failure["node"],
        )
    await write_generation_log(ctx, state)
    return update
