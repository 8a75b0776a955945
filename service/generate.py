"""POST /v1/widgets/sql/generate: the same generation and safety nodes the graph runs,
without execution. A safety rejection is a 422 problem naming the rule; an unreachable
or unconfigured model is a 503 problem."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langgraph.runtime import Runtime
from pydantic import ValidationError

from domain.failures import FailureKind
from domain.models import DataIntent, WidgetSpec, validate_intent
from nodes.degrade_or_return import write_generation_log
from nodes.safety_check import safety_check
from nodes.sql_generate import sql_generate
from service.problems import ProblemError
from service.schemas import GenerateBody, GenerateResponse, SafetyVerdict

if TYPE_CHECKING:
    from service.resources import Resources

UNAVAILABLE = {
    FailureKind.bedrock_unconfigured.value,
    FailureKind.bedrock_unavailable.value,
    FailureKind.llm_timeout.value,
}


def _intent(body: GenerateBody) -> DataIntent:
    base = body.data_intent.model_dump() if body.data_intent else {}
    if base.get("metric_id", body.metric_id) != body.metric_id:
        raise ProblemError(
            422,
            f"metric_id {body.metric_id!r} and data_intent.metric_id {base['metric_id']!r} differ",
        )
    base["metric_id"] = body.metric_id
    if body.question is not None:
        base["question"] = body.question
    try:
        return DataIntent.model_validate(base)
    except ValidationError as exc:
        raise ProblemError(422, f"invalid data_intent: {exc.errors()[0]['msg']}") from exc


async def generate_sql(res: Resources, body: GenerateBody) -> GenerateResponse:
    ctx = res.context
    intent = _intent(body)
    metric = ctx.registry.metric(intent.metric_id)
    routing = ctx.registry.routing(intent.metric_id)
    if metric is None or routing is None:
        raise ProblemError(422, f"unknown metric {intent.metric_id!r}", title="Unknown metric")
    if routing.backend != "databricks":
        raise ProblemError(
            422,
            f"metric {metric.name!r} is served by {routing.backend}: SQL generation is for warehouse metrics",
        )
    problems = validate_intent(intent, {metric.name: metric})
    if problems:
        raise ProblemError(422, "; ".join(problems), title="Invalid data_intent")
    state: dict[str, Any] = {
        "widget_id": None,
        "spec": WidgetSpec.model_construct(
            title="sql/generate", kind="table", data_intent=intent, mock_data=[{}]
        ),
        "metric": metric,
        "routing": routing,
        "generator": "llm" if (intent.question or routing.generator == "llm") else "compiled",
    }
    runtime = Runtime(context=ctx)
    state |= await sql_generate(state, runtime)  # type: ignore[arg-type]
    if not state.get("failure"):
        state |= await safety_check(state, runtime)  # type: ignore[arg-type]
    await write_generation_log(ctx, state)  # type: ignore[arg-type]
    failure = state.get("failure")
    if failure:
        if failure["kind"] == FailureKind.safety_violation.value:
            verdict = state["safety"]
            raise ProblemError(
                422,
                failure["detail"],
                title="SQL rejected by the safety layer",
                type_="urn:problem:safety-violation",
                rule=verdict["rule"],
                sql=state.get("candidate_sql"),
            )
        if failure["kind"] in UNAVAILABLE:
            raise ProblemError(
                503, failure["detail"], title="LLM unavailable", kind=failure["kind"]
            )
        raise ProblemError(
            422, failure["detail"], title="SQL generation failed", kind=failure["kind"]
        )
    generation = state.get("generation") or {}
    return GenerateResponse(
        sql=state["generated_sql"],
        dialect="databricks",
        generator=state["generator"],
        model_id=generation.get("model_id"),
        safety=SafetyVerdict(allowed=True, rule=None),
    )
