"""sql_generate: Databricks SQL for a warehouse metric, compiled from its definition or,
for a free-text question (or a metric whose routing says generator: llm), written by the
LLM. A question whose SQL already passed the safety layer is reused without asking again."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from langgraph.runtime import Runtime

from domain.access import UNRESTRICTED
from domain.failures import FailureKind, ResolverFailure
from domain.keys import approved_sql_key
from domain.ports import GenerationRequest, TableSchema
from graph.context import Context
from graph.state import State
from metricsql import compile_intent
from nodes._common import fail, failed, traced

# the model cannot be asked now: a question answered before runs from its logged SQL
MODEL_UNREACHABLE = frozenset(
    {FailureKind.bedrock_unavailable, FailureKind.llm_timeout, FailureKind.llm_rate_limited}
)


def schema_version(tables: tuple[TableSchema, ...]) -> str:
    blob = repr(sorted((t.name, t.columns) for t in tables)).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


@traced("sql_generate")
async def sql_generate(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = runtime.context
    metric, intent = state["metric"], state["spec"].data_intent
    # whole seconds: the same SQL text within a second (friendlier to the warehouse result cache)
    now = datetime.fromtimestamp(int(ctx.clock()), UTC)
    if state["generator"] == "compiled":
        try:
            sql = compile_intent(
                metric,
                intent,
                now=now,
                max_rows=ctx.safety.max_rows,
                default_limit=ctx.default_row_limit,
            )
        except ResolverFailure as exc:
            return failed("sql_generate", exc)
        return {"candidate_sql": sql, "outcome": "compiled"}

    question = intent.question or metric.description
    tenant = (state.get("access") or UNRESTRICTED).tenant
    record: dict[str, Any] = {
        "tenant": tenant,
        "widget_id": state.get("widget_id"),
        "metric_id": metric.name,
        "question": question,
        "generator": "llm",
        "model_id": ctx.llm.model_id if ctx.llm else None,
    }
    if ctx.llm is None:
        record["failure_kind"] = FailureKind.bedrock_unconfigured.value
        return {"generation": record} | fail(
            "sql_generate",
            FailureKind.bedrock_unconfigured,
            "this widget needs LLM-written SQL but no Bedrock model is configured (set BEDROCK_MODEL_ID)",
        )
    tables = tuple(t for t in ctx.table_schemas.current() if t.name in ctx.safety.allowed_tables)
    key = approved_sql_key(
        question=question,
        metric=metric,
        intent=intent,
        schema_version=schema_version(tables),
        model_id=ctx.llm.model_id,
        policy_version=ctx.safety.version,
        tenant=tenant,
    )
    approved = await ctx.cache.get(key)
    if approved is not None:
        return {
            "candidate_sql": approved["sql"],
            "generation": record | {"approved_key": key, "reused": True},
            "outcome": "reused_approved",
        }
    request = GenerationRequest(
        question=question,
        metric=metric,
        intent=intent,
        tables=tables,
        dialect="databricks",
        max_rows=min(intent.limit or ctx.default_row_limit, ctx.safety.max_rows),
    )
    try:
        if ctx.llm_budget is not None:
            wait = await ctx.llm_budget.take(tenant)
            if wait is not None:
                raise ResolverFailure(
                    f"tenant {tenant!r} is over its LLM budget ({ctx.llm_budget.limit}); "
                    f"retry in {max(1, round(wait))} s",
                    kind=FailureKind.llm_rate_limited,
                )
        gen = await ctx.llm.generate(request)
    except ResolverFailure as exc:
        if exc.kind in MODEL_UNREACHABLE and ctx.generation_log is not None:
            # The model is down: a question it answered before still runs live from the
            # last SQL of its that passed the safety layer (checked again before it runs).
            logged = await ctx.generation_log.last_approved(approved_key=key)
            if logged is not None:
                return {
                    "candidate_sql": logged,
                    "generation": record | {"approved_key": key, "reused": True},
                    "outcome": "reused_logged",
                }
        record["failure_kind"] = exc.kind.value
        return {"generation": record} | failed("sql_generate", exc)
    record |= {
        "model_id": gen.model_id,
        "prompt_hash": gen.prompt_hash,
        "generated_sql": gen.sql,
        "latency_ms": gen.latency_ms,
        "input_tokens": gen.input_tokens,
        "output_tokens": gen.output_tokens,
        "cache_read_tokens": gen.cache_read_tokens,
        "approved_key": key,
        "reused": False,
    }
    return {"candidate_sql": gen.sql, "generation": record, "outcome": "llm"}
