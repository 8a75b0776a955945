"""/v1/widgets/{widget_id}/verified-answer: an owner's verified answer to a widget's
question (README "Verified answers").

The answer is keyed by the question as written, per tenant: every widget of the tenant that
asks the same question is answered from it (without the model), with `trust: verified` and
who verified it and when. `PUT` verifies (or verifies again) a data intent over a catalog
metric or checked SQL, `DELETE` withdraws it (both scope `answers:verify`, audited like
widget writes), `GET` reads it (scope `widgets:read`) with whether a catalog change broke it
(`needs_reverification`: checked again on each read and each resolution)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Response

from domain.failures import FailureKind, InvalidIntent
from domain.ports import VerifiedAnswer, VerifiedAnswers
from nodes._grounding import compile_grounded, grounding_catalog
from nodes.verified import checked_verified_sql, reverification_problem, verification_of
from service.deps import ResourcesDep, Widget, WidgetSpecDep, WidgetToVerify
from service.problems import (
    BODY_PROBLEMS,
    PROBLEM_JSON,
    PROBLEMS,
    Problem,
    ProblemError,
    failure_problem,
)
from service.schemas import VerifiedAnswerOut, VerifyBody
from service.wiring import Resources
from sqlsafety import SafetyViolation

router = APIRouter(tags=["verified answers"])
PATH = "/v1/widgets/{widget_id}/verified-answer"
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": "Store unavailable"}
}


def _store(res: Resources) -> VerifiedAnswers:
    store = res.context.verified_answers
    if store is None:
        raise ProblemError(503, "verified answers need PostgreSQL (DATABASE_URL)")
    return store


def _question(widget: Widget) -> str:
    question = widget.spec.data_intent.question
    if not question:
        raise ProblemError(
            422,
            f"widget {widget.id!r} has no free-text question (data_intent.question): "
            "only a question's answer can be verified",
            title="Widget has no question",
            type_="urn:problem:no-question",
        )
    return question


def _out(answer: VerifiedAnswer, problem: str | None) -> VerifiedAnswerOut:
    return VerifiedAnswerOut(
        widget_id=answer.widget_id,
        question=answer.question,
        intent=answer.intent,
        sql=answer.sql,
        verified_by=answer.verified_by,
        verified_at=verification_of(answer)["verified_at"],
        needs_reverification=problem is not None,
        reverification_reason=problem,
    )


@router.put(
    PATH,
    response_model=VerifiedAnswerOut,
    responses={**BODY_PROBLEMS, **UNAVAILABLE, 201: {"model": VerifiedAnswerOut}},
)
async def put_verified_answer(
    widget: WidgetToVerify, body: VerifyBody, res: ResourcesDep, response: Response
) -> VerifiedAnswerOut:
    """Verify the answer to the widget's question (as written) for the caller's tenant:
    a data intent over a compiled warehouse catalog metric (validated as PUT and compiled
    now: 422 if it does not fit) or SQL (checked by the safety layer against the warehouse
    catalog: 422 naming the rule). Replaces an earlier one (and clears its re-verification
    flag). Scope `answers:verify`; audited (`answer.verify`)."""
    ctx = res.context
    question = _question(widget)
    cap = widget.spec.data_intent.limit
    if body.intent is not None:
        raw = body.intent.model_dump(mode="json", exclude={"question"})
        now = datetime.fromtimestamp(int(ctx.clock()), UTC)
        compiled = compile_grounded(ctx, raw, grounding_catalog(ctx), now, cap)
        if isinstance(compiled, str):  # a 422 problem
            raise InvalidIntent(f"the intent does not fit the catalog: {compiled}")
        intent, sql = raw, None  # as given: each asking widget's own limit binds it at run
    else:
        sql = body.sql
        try:
            checked_verified_sql(ctx, body.sql or "", cap)
        except SafetyViolation as exc:
            raise failure_problem(
                FailureKind.safety_violation,
                f"{exc.rule}: {exc.reason}",
                show_kind=False,
                rule=exc.rule,
            ) from None
        intent = None
    answer = VerifiedAnswer(
        tenant=widget.principal.tenant,
        question=question,
        widget_id=widget.id,
        intent=intent,
        sql=sql,
        verified_by=widget.principal.subject,
        verified_at=float(int(ctx.clock())),  # whole seconds: exact through PostgreSQL
    )
    created = await _store(res).put(answer)  # PostgresFailure: a 503 problem
    response.status_code = 201 if created else 200
    return _out(answer, None)


def _not_verified(widget: Widget) -> ProblemError:
    return ProblemError(
        404,
        f"the question of widget {widget.id!r} has no verified answer",
        title="No verified answer",
        type_="urn:problem:no-verified-answer",
    )


@router.get(PATH, response_model=VerifiedAnswerOut, responses={**PROBLEMS, **UNAVAILABLE})
async def get_verified_answer(widget: WidgetSpecDep, res: ResourcesDep) -> VerifiedAnswerOut:
    """The verified answer to the widget's question (404 if none), and whether it needs
    re-verification: checked against the catalog as it is now (a broken one is flagged,
    as a resolution would). Scope `widgets:read`."""
    store = _store(res)
    question = _question(widget)
    answer = await store.read(widget.principal.tenant, question)
    if answer is None:
        raise _not_verified(widget)
    problem = reverification_problem(res.context, answer, widget.spec.data_intent.limit)
    if problem is not None and not answer.needs_reverification:
        await store.flag(answer.tenant, answer.question, problem)
    return _out(answer, problem)


@router.delete(PATH, status_code=204, responses={**PROBLEMS, **UNAVAILABLE})
async def delete_verified_answer(widget: WidgetToVerify, res: ResourcesDep) -> Response:
    """Withdraw the verified answer to the widget's question (404 if none): the question
    takes the usual way again. Scope `answers:verify`; audited (`answer.unverify`)."""
    deleted = await _store(res).delete(
        widget.principal.tenant,
        _question(widget),
        widget_id=widget.id,
        subject=widget.principal.subject,
    )
    if not deleted:
        raise _not_verified(widget)
    return Response(status_code=204)
