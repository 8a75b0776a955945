"""safety_check: only one read-only SELECT on allowlisted tables gets through; the SQL
re-rendered from the checked tree, not the candidate text, is what runs, with the caller's
row filters applied to every read of a filtered table (`sqlsafety.row_filters`). The
approved-SQL cache keeps the unfiltered checked SQL: filters are applied on every run."""

from __future__ import annotations

import re
from typing import Any

from langgraph.runtime import Runtime

from domain.access import UNRESTRICTED
from domain.failures import FailureKind
from domain.models import MetricDef
from graph.context import Context
from graph.state import State
from nodes._common import fail, traced
from sqlsafety import SafetyViolation, check_sql

APPROVED_SQL_TTL_S = 30 * 86_400
_HIDDEN = re.compile(r"(?<![A-Za-z0-9_])_metadata(?![A-Za-z0-9_])", re.IGNORECASE)


def needs_hidden_columns(metric: MetricDef | None) -> bool:
    """A metric whose definition itself names a hidden metadata column (`_metadata...`):
    only its SQL may read them (sqlsafety's `hidden_column` rule)."""
    if metric is None:
        return False
    d = metric.definition
    text = " ".join([d.measure or "", d.time_column, *d.dimensions, *d.filter_columns])
    return _HIDDEN.search(text) is not None


@traced("safety_check")
async def safety_check(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = runtime.context
    policy = ctx.safety
    spec = state.get("spec")
    # the widget's own limit binds LLM-written SQL too (the compiler already applies it)
    limit = spec.data_intent.limit if spec is not None else None
    access = state.get("access") or UNRESTRICTED
    metric = ctx.registry.metric(spec.data_intent.metric_id) if spec is not None else None
    generation = state.get("generation")
    # a fresh LLM answer (not a dry run) is cached as approved SQL: unfiltered, so keep it
    cacheable = bool(
        generation
        and generation.get("approved_key")
        and not generation.get("reused")
        and not state.get("dry_run")
    )
    try:
        checked = check_sql(
            state["candidate_sql"],
            dialect=policy.dialect,
            allowed_tables=policy.allowed_tables,
            max_rows=min(limit or policy.max_rows, policy.max_rows),
            row_filters=access.table_filters(),
            keep_unfiltered=cacheable,
            hidden_columns=needs_hidden_columns(metric),
        )
    except SafetyViolation as exc:
        verdict = {"allowed": False, "rule": exc.rule, "reason": exc.reason}
        return {"safety": verdict} | fail(
            "safety_check", FailureKind.safety_violation, f"{exc.rule}: {exc.reason}"
        )
    if cacheable and generation:  # a dry run caches nothing
        await ctx.cache.set(
            generation["approved_key"],
            {"sql": checked.unfiltered_sql, "model_id": generation["model_id"]}
            # a grounded answer is reused as its intent (compiled again at each run)
            | ({"intent": generation["intent"]} if "intent" in generation else {}),
            APPROVED_SQL_TTL_S,
        )
    return {
        "safety": {"allowed": True, "rule": None, "reason": None},
        "generated_sql": checked.sql,
        "outcome": "allowed",
    }
