"""sql_generate: Databricks SQL for a warehouse metric, compiled from its definition or,
for a free-text question (or a metric whose routing says generator: llm), written by the
LLM. A question whose SQL already passed the safety layer is reused without asking again.

A free-text question is grounded first: the model expresses it as a data intent over the
catalog's compiled warehouse metrics (`SqlGenerator.ground`); an intent that validates
against the catalog (`validate_intent`, as PUT) is compiled by the metric compiler and the
answer's trust is `compiled_from_metric`. Only when no metric fits (the model says so, or
its intent does not validate or compile) does the model write the SQL itself
(`model_written_unverified`). Before either, a question an owner verified is answered from
its verified answer without the model (`verified`, nodes/verified.py). Every way goes
through the safety layer (row filters, limits)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, cast

from langgraph.runtime import Runtime

from domain.access import UNRESTRICTED
from domain.failures import FailureKind, ResolverFailure
from domain.keys import approved_sql_key
from domain.ports import GenerationRequest, Grounding, GroundingRequest, TableSchema
from graph.context import Context
from graph.state import Generation, State
from metricsql import compile_intent
from nodes._common import fail, failed, traced
from nodes._grounding import compile_grounded, grounding_catalog
from nodes.verified import answer_verified

# the model cannot be asked now: a question answered before runs from its logged SQL
MODEL_UNREACHABLE = frozenset(
    {FailureKind.bedrock_unavailable, FailureKind.llm_timeout, FailureKind.llm_rate_limited}
)


def _usage(g: Grounding) -> dict[str, Any]:
    return {
        "model_id": g.model_id,
        "prompt_hash": g.prompt_hash,
        "latency_ms": g.latency_ms,
        "input_tokens": g.input_tokens,
        "output_tokens": g.output_tokens,
        "cache_read_tokens": g.cache_read_tokens,
    }


def _plus(a: int | None, b: int | None) -> int | None:
    return None if a is None and b is None else (a or 0) + (b or 0)


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
    if intent.question:  # an owner's verified answer to the question as written comes first
        verified = await answer_verified(ctx, cast(Generation, record), now, intent.limit)
        if verified is not None:
            return verified
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
    catalog = grounding_catalog(ctx) if intent.question else {}
    if approved is not None:
        reuse = record | {"approved_key": key, "reused": True}
        if "intent" not in approved:
            return {
                "candidate_sql": approved["sql"],
                "generation": reuse | {"way": "model_written_unverified"},
                "trust": "model_written_unverified",
                "outcome": "reused_approved",
            }
        # a grounded answer: its intent is compiled again now (time bounds move), if the
        # catalog still validates it; else the question is asked again
        compiled = compile_grounded(ctx, approved["intent"], catalog, now, intent.limit)
        if not isinstance(compiled, str):
            return {
                "candidate_sql": compiled[1],
                "generation": reuse | {"way": "compiled_from_metric", "intent": approved["intent"]},
                "trust": "compiled_from_metric",
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
    grounding: Grounding | None = None
    try:
        if ctx.llm_budget is not None:  # one budget unit per question, whichever way
            wait = await ctx.llm_budget.take(tenant)
            if wait is not None:
                raise ResolverFailure(
                    f"tenant {tenant!r} is over its LLM budget ({ctx.llm_budget.limit}); "
                    f"retry in {max(1, round(wait))} s",
                    kind=FailureKind.llm_rate_limited,
                )
        if intent.question and catalog:
            try:
                grounding = await ctx.llm.ground(
                    GroundingRequest(
                        question=question,
                        metrics=tuple(catalog.values()),
                        max_rows=request.max_rows,
                    )
                )
            except ResolverFailure as exc:
                if exc.kind is not FailureKind.llm_invalid_output:
                    raise
                record["grounding"] = f"invalid grounding answer: {exc.detail}"
            if grounding is not None and grounding.intent is not None:
                compiled = compile_grounded(ctx, grounding.intent, catalog, now, intent.limit)
                if not isinstance(compiled, str):
                    grounded, sql = compiled
                    raw = grounded.model_dump(mode="json", exclude={"question"})
                    record |= _usage(grounding) | {
                        "generated_sql": sql,
                        "approved_key": key,
                        "reused": False,
                        "way": "compiled_from_metric",
                        "intent": raw,
                        "grounding": grounding.reason,
                    }
                    return {
                        "candidate_sql": sql,
                        "generation": record,
                        "trust": "compiled_from_metric",
                        "outcome": "grounded",
                    }
                record["grounding"] = f"intent does not fit the catalog: {compiled}"
            elif grounding is not None:
                record["grounding"] = f"no metric fits: {grounding.reason}"
        gen = await ctx.llm.generate(request)
    except ResolverFailure as exc:
        if exc.kind in MODEL_UNREACHABLE and ctx.generation_log is not None:
            # The model is down: a question it answered before still runs live from the
            # last SQL of its that passed the safety layer (checked again before it runs).
            logged = await ctx.generation_log.last_approved(approved_key=key)
            if logged is not None:
                return {
                    "candidate_sql": logged,
                    "generation": record
                    | {"approved_key": key, "reused": True, "way": "model_written_unverified"},
                    "trust": "model_written_unverified",
                    "outcome": "reused_logged",
                }
        record["failure_kind"] = exc.kind.value
        return {"generation": record} | failed("sql_generate", exc)
    first = grounding if grounding is not None else None
    record |= {
        "model_id": gen.model_id,
        "prompt_hash": gen.prompt_hash,
        "generated_sql": gen.sql,
        "latency_ms": gen.latency_ms + (first.latency_ms if first else 0.0),
        "input_tokens": _plus(gen.input_tokens, first.input_tokens if first else None),
        "output_tokens": _plus(gen.output_tokens, first.output_tokens if first else None),
        "cache_read_tokens": gen.cache_read_tokens,
        "approved_key": key,
        "reused": False,
        "way": "model_written_unverified",
    }
    return {
        "candidate_sql": gen.sql,
        "generation": record,
        "trust": "model_written_unverified",
        "outcome": "llm",
    }
