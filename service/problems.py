"""RFC 7807 problem details (application/problem+json) for every error the API returns."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, assert_never

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match, Route

from domain.failures import FailureKind, InvalidIntent, ResolverFailure
from domain.models import RESERVED_WIDGET_IDS

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("resolver")


class Problem(BaseModel):
    """RFC 7807 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None


PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {
        "model": Problem,
        "content": {PROBLEM_JSON: {}},
        "description": "Missing or invalid credentials (WWW-Authenticate says which)",
    },
    403: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": "Missing scope"},
    404: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": "Not found"},
    422: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": "Invalid request"},
}
# Answered by the authentication dependency on every data and admin route.
AUTH_PROBLEMS: dict[int | str, dict[str, Any]] = {k: PROBLEMS[k] for k in (401, 403)}
# Operations with a request body: a body that is not JSON (400) or too large (413).
BODY_PROBLEMS: dict[int | str, dict[str, Any]] = {
    **PROBLEMS,
    400: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": "Body is not JSON"},
    413: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": "Body over the limit"},
}


class ProblemError(Exception):
    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        type_: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.type = type_ or "about:blank"
        self.headers = headers or {}
        self.extra = extra


@dataclass(frozen=True, slots=True)
class KindProblem:
    """How a failure kind is answered when it reaches HTTP as an error."""

    status: int
    title: str
    type_: str = "about:blank"


def kind_problem(kind: FailureKind) -> KindProblem:
    """The one mapping from failure kind to problem (mypy checks it covers every kind).
    Resolutions never reach it (a degraded answer is a 200 that says so); it answers the
    SQL generation route and a domain failure raised by a write (a registry store)."""
    match kind:
        case FailureKind.invalid_intent:
            return KindProblem(422, "Invalid data_intent", "urn:problem:invalid-intent")
        case FailureKind.routing_missing:
            return KindProblem(422, "Unknown metric")
        case FailureKind.safety_violation:
            return KindProblem(
                422, "SQL rejected by the safety layer", "urn:problem:safety-violation"
            )
        case FailureKind.llm_refused:
            return KindProblem(422, "Question refused by the guardrail")
        case FailureKind.llm_invalid_output:
            return KindProblem(422, "SQL generation failed")
        case FailureKind.llm_rate_limited:
            return KindProblem(429, "Too Many Requests", "urn:problem:llm-rate-limited")
        case (
            FailureKind.bedrock_unconfigured
            | FailureKind.bedrock_unavailable
            | FailureKind.llm_timeout
        ):
            return KindProblem(503, "LLM unavailable")
        case (
            FailureKind.postgres_unmapped
            | FailureKind.postgres_unavailable
            | FailureKind.postgres_timeout
            | FailureKind.postgres_error
            | FailureKind.databricks_unavailable
            | FailureKind.databricks_auth
            | FailureKind.databricks_timeout
            | FailureKind.databricks_error
        ):
            return KindProblem(503, "Service Unavailable")
        case _:
            assert_never(kind)


def failure_problem(
    failure_kind: FailureKind,
    detail: str,
    *,
    show_kind: bool = True,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> ProblemError:
    """The problem for a failure of `failure_kind` (kind_problem): its `kind` member unless
    `show_kind` is off, and route-specific `extra` members."""
    p = kind_problem(failure_kind)
    if show_kind:
        extra["kind"] = failure_kind.value
    return ProblemError(p.status, detail, title=p.title, type_=p.type_, headers=headers, **extra)


def problem_response(
    request: Request,
    status: int,
    detail: str | None,
    *,
    title: str | None = None,
    type_: str = "about:blank",
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": type_,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": str(request.url.path),
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(jsonable_encoder(body), status_code=status, media_type=PROBLEM_JSON)


def _routes(routes: Iterable[BaseRoute]) -> Iterator[Route]:
    """Every endpoint route, including those of included routers (no prefixes here)."""
    for route in routes:
        if isinstance(route, Route):
            yield route
        nested = getattr(getattr(route, "original_router", None), "routes", None)
        if nested is not None:
            yield from _routes(nested)


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        out.append(
            {
                "loc": [str(p) for p in err.get("loc", ())],
                "msg": err.get("msg"),
                "type": err.get("type"),
            }
        )
    return out


def _content_type_hint(request: Request, errors: list[dict[str, Any]]) -> str:
    """When a body failed validation and was not sent as JSON (curl's `-d` alone sends a
    form), say which header to set."""
    if not any(e["loc"][:1] == ["body"] for e in errors):
        return ""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json" or content_type.endswith("+json"):
        return ""
    sent = content_type or "no content-type"
    return (
        f"the body was sent as {sent}, not JSON: send it with the header "
        "`content-type: application/json` (curl: -H 'content-type: application/json'); "
    )


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        response = problem_response(
            request, exc.status, exc.detail, title=exc.title, type_=exc.type, **exc.extra
        )
        response.headers.update(exc.headers)
        return response

    @app.exception_handler(ResolverFailure)
    async def _failure(request: Request, exc: ResolverFailure) -> JSONResponse:
        # A domain failure reaching HTTP (a store write), answered by its kind's problem.
        if isinstance(exc, InvalidIntent):
            errors = [{"loc": ["body", "data_intent"], "msg": p} for p in exc.problems]
            problem = failure_problem(exc.kind, exc.detail, show_kind=False, errors=errors)
        else:
            problem = failure_problem(exc.kind, exc.detail)
        return await _problem(request, problem)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _field_errors(exc)
        summary = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:5])
        return problem_response(
            request,
            422,
            _content_type_hint(request, errors) + f"request failed validation: {summary}",
            title="Unprocessable Content",
            type_="urn:problem:validation",
            errors=errors,
        )

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not a degrade kind: logged with its traceback, answered as a problem.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            request, 500, "internal error (logged)", title="Internal Server Error"
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = problem_response(request, exc.status_code, str(exc.detail))
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:  # every method any route allows on this path
            allowed = {
                m
                for route in _routes(request.app.routes)
                for match, child in [route.matches(request.scope)]
                if match != Match.NONE
                # `/v1/widgets/data` is the batch route, not a widget named "data"
                and child.get("path_params", {}).get("widget_id") not in RESERVED_WIDGET_IDS
                for m in (route.methods or ())
            }
            response.headers["Allow"] = ", ".join(sorted(allowed))
        return response
