"""The catalog a question may be grounded in, and a grounded intent compiled: shared by
sql_generate (the model's intent) and the verified answers (an owner's intent)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from domain.failures import ResolverFailure
from domain.models import DataIntent, MetricDef, validate_intent
from graph.context import Context
from metricsql import compile_intent


def grounding_catalog(ctx: Context) -> dict[str, MetricDef]:
    """The metrics a question may be grounded in: warehouse metrics the compiler builds."""
    routings = ctx.registry.routings()
    return {
        name: metric
        for name, metric in ctx.registry.metrics().items()
        if metric.definition.measure
        and (r := routings.get(name)) is not None
        and r.backend == "databricks"
        and r.generator == "compiled"
    }


def compile_grounded(
    ctx: Context,
    raw: dict[str, Any],
    catalog: dict[str, MetricDef],
    now: datetime,
    cap: int | None = None,
) -> tuple[DataIntent, str] | str:
    """(intent, SQL) for the model's intent, or why it does not fit (then the model writes
    the SQL). The same validation as PUT, then the metric compiler; the widget's own limit
    (`cap`) binds the intent's."""
    try:
        grounded = DataIntent.model_validate(raw)
    except ValidationError as exc:
        return f"invalid intent: {exc.error_count()} error(s)"
    if cap is not None:
        grounded = grounded.model_copy(update={"limit": min(grounded.limit or cap, cap)})
    problems = validate_intent(grounded, catalog)
    if problems:
        return "; ".join(problems)
    try:
        sql = compile_intent(
            catalog[grounded.metric_id],
            grounded,
            now=now,
            max_rows=ctx.safety.max_rows,
            default_limit=ctx.default_row_limit,
        )
    except ResolverFailure as exc:
        return exc.detail
    return grounded, sql
