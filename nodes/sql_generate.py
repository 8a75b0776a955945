"""sql_generate: Databricks SQL for a warehouse metric, compiled from its definition or,
for a free-text question (or a metric whose routing says generator: llm), written by the
LLM. A question whose SQL already passed the safety layer is reused without asking again.

A free-text question is grounded first: the model expresses it as a data intent over the
catalog's compiled warehouse metrics (`SqlGenerator.ground`); an intent that validates
against the catalog (`validate_intent`, as PUT) is compiled by the metric compiler and the
answer's trust is `compiled_from_metric`. Only when no metric fits (the model says so, or
its intent does not validate or compile) does the model write the SQL itself
(`model_written_unverified`). Before either, a question an owner verified is answered from
its verified answer without the model (`verified`, nodes/verified.py). Every warehouse way
goes through the safety layer (row filters, limits).

The model may also ground a question in a PostgreSQL metric (the KPI history, with an
allowlisted query): a validated intent is not compiled here but handed to postgres_query
(state `grounded`, `metric` and `backend: postgres`; graph/routing.py routes there), which
runs the metric's allowlisted query with the caller's row filters; trust
`compiled_from_metric` too. No SQL is written by the model on that way."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, cast

from langgraph.runtime import Runtime

from domain.access import UNRESTRICTED
from domain.failures import FailureKind, ResolverFailure
from domain.freshness import answering
from domain.keys import approved_sql_key
from domain.models import DataIntent, MetricDef
from domain.ports import GenerationRequest, Grounding, GroundingRequest, TableSchema, Trust
from graph.context import Context
from graph.state import Generation, State
from metricsql import compile_intent
from nodes._common import fail, failed, traced
from nodes._grounding import (
    compile_grounded,
    grounding_catalog,
    postgres_catalog,
    validate_grounded,
)
from nodes.safety_check import APPROVED_SQL_TTL_S
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


def _on_postgres(
    ctx: Context,
    state: State,
    grounded: DataIntent | str,
    catalog: dict[str, MetricDef],
    record: dict[str, Any],
) -> dict[str, Any] | str:
    """A question grounded in a PostgreSQL metric, for postgres_query to run (or why not).
    The log keeps the query as rendered without the caller's row filters (postgres_query
    applies them), as the warehouse way logs its SQL before the safety layer. The answer
    is kept and served under the stricter of the question's and the metric's freshness
    policies (`routing`, which degrade_or_return and mock_data read)."""
    if isinstance(grounded, str):
        return grounded
    metric = catalog[grounded.metric_id]
    assert ctx.postgres is not None  # the catalog is empty without it
    try:
        sql = ctx.postgres.render_sql(metric, grounded, now=ctx.clock())
    except ResolverFailure as exc:
        return exc.detail
    way: Trust = "compiled_from_metric"
    raw = grounded.model_dump(mode="json", exclude={"question"})
    out: dict[str, Any] = {
        "metric": metric,
        "backend": "postgres",
        "grounded": grounded,
        "generation": record | {"generated_sql": sql, "way": way, "intent": raw},
        "trust": way,
    }
    metric_routing = ctx.registry.routings().get(grounded.metric_id)
    if metric_routing is not None and (asked := state.get("routing")) is not None:
        out["routing"] = answering(asked, metric_routing)
    return out


async def _grounded(
    ctx: Context,
    state: State,
    grounding: Grounding,
    catalogs: tuple[dict[str, MetricDef], dict[str, MetricDef]],
    record: dict[str, Any],
    now: datetime,
) -> dict[str, Any] | str:
    """The answer to the model's intent, or why it does not fit the catalog (then the model
    writes the SQL): a warehouse metric's intent compiled (safety_check next), a PostgreSQL
    metric's handed to postgres_query."""
    assert grounding.intent is not None
    warehouse, kpis = catalogs
    cap = state["spec"].data_intent.limit
    record = record | _usage(grounding) | {"reused": False, "grounding": grounding.reason}
    if grounding.intent.get("metric_id") in kpis:  # the KPI history
        pg = _on_postgres(ctx, state, validate_grounded(grounding.intent, kpis, cap), kpis, record)
        if isinstance(pg, str):
            return pg
        if not state.get("dry_run"):  # reused as its intent, as the warehouse way is
            approved = {"intent": pg["generation"]["intent"], "model_id": grounding.model_id}
            await ctx.cache.set(record["approved_key"], approved, APPROVED_SQL_TTL_S)
        return pg | {"outcome": "grounded"}
    compiled = compile_grounded(ctx, grounding.intent, warehouse, now, cap)
    if isinstance(compiled, str):
        return compiled
    grounded, sql = compiled
    way: Trust = "compiled_from_metric"
    raw = grounded.model_dump(mode="json", exclude={"question"})
    return {
        "candidate_sql": sql,
        "generation": record | {"generated_sql": sql, "way": way, "intent": raw},
        "trust": way,
        "outcome": "grounded",
    }


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
    kpis = postgres_catalog(ctx) if intent.question else {}
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
        if approved["intent"].get("metric_id") in kpis:
            pg = _on_postgres(
                ctx, state, validate_grounded(approved["intent"], kpis, intent.limit), kpis, reuse
            )
            if not isinstance(pg, str):
                return pg | {"outcome": "reused_approved"}
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
        if intent.question and (catalog or kpis):
            try:
                grounding = await ctx.llm.ground(
                    GroundingRequest(
                        question=question,
                        metrics=(*catalog.values(), *kpis.values()),
                        max_rows=request.max_rows,
                    )
                )
            except ResolverFailure as exc:
                if exc.kind is not FailureKind.llm_invalid_output:
                    raise
                record["grounding"] = f"invalid grounding answer: {exc.detail}"
            if grounding is not None and grounding.intent is not None:
                answer = await _grounded(
                    ctx, state, grounding, (catalog, kpis), record | {"approved_key": key}, now
                )
                if not isinstance(answer, str):
                    return answer
                record["grounding"] = f"intent does not fit the catalog: {answer}"
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
