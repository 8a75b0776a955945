"""POST /v1/widgets/sql/generate: the checked Databricks SQL for a metric or a question,
from the graph's dry-run path. A safety rejection is a 422 problem naming the rule; an
unreachable or unconfigured model is a 503 problem."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import ValidationError

from domain.failures import FailureKind
from domain.models import DataIntent
from service.deps import ResolverDep, ResourcesDep, SqlGenerator, access_of
from service.problems import (
    BODY_PROBLEMS,
    PROBLEM_JSON,
    Problem,
    ProblemError,
    failure_problem,
)
from service.schemas import GenerateBody, GenerateResponse, SafetyVerdict

router = APIRouter(tags=["sql"])


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


@router.post(
    "/v1/widgets/sql/generate",
    response_model=GenerateResponse,
    responses={
        **BODY_PROBLEMS,
        429: {
            "model": Problem,
            "content": {PROBLEM_JSON: {}},
            "description": "The tenant's LLM budget is spent (Retry-After)",
        },
        503: {"model": Problem, "content": {PROBLEM_JSON: {}}},
    },
)
async def generate_sql(
    body: GenerateBody, res: ResourcesDep, resolver: ResolverDep, who: SqlGenerator
) -> GenerateResponse:
    """Generate (without running) the checked Databricks SQL for a metric or a question.
    Scope `sql:generate`; the SQL shown carries the caller's row filters; LLM generations
    count against the tenant's budget (429 with Retry-After when spent)."""
    intent = _intent(body)
    routing = res.registry.routing(intent.metric_id)
    if res.registry.metric(intent.metric_id) is None or routing is None:
        raise ProblemError(422, f"unknown metric {intent.metric_id!r}", title="Unknown metric")
    if routing.backend != "databricks":
        raise ProblemError(
            422,
            f"metric {intent.metric_id!r} is served by {routing.backend}: "
            "SQL generation is for warehouse metrics",
        )
    out = await resolver.generate(intent, access=access_of(res, who))
    failure = out.get("failure")
    if failure:
        kind = FailureKind(failure["kind"])
        if kind is FailureKind.llm_rate_limited:
            budget = res.context.llm_budget
            wait = await budget.retry_after(who.tenant) if budget else 1
            raise failure_problem(
                kind, failure["detail"], headers={"Retry-After": str(max(1, round(wait)))}
            )
        if kind is FailureKind.safety_violation:
            raise failure_problem(
                kind,
                failure["detail"],
                show_kind=False,
                rule=out["safety"]["rule"],
                sql=out.get("candidate_sql"),
            )
        raise failure_problem(kind, failure["detail"])
    generation = out.get("generation") or {}
    return GenerateResponse(
        sql=out["response"]["generated_sql"],
        dialect="databricks",
        generator=out["generator"],
        model_id=generation.get("model_id"),
        safety=SafetyVerdict(allowed=True, rule=None),
    )
