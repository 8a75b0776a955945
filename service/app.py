"""The FastAPI service: it invokes the compiled resolution graph once per request."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, HTTPException, Query, Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from domain.models import WidgetSpec, validate_intent
from service.deps import ResourcesDep, WidgetId
from service.problems import (
    PROBLEM_JSON,
    Problem,
    ProblemError,
    install_problem_handlers,
    problem_response,
)
from service.resources import open_resources
from service.schemas import (
    BatchBody,
    BatchResponse,
    GenerateBody,
    GenerateResponse,
    Health,
    MetricList,
    MetricOut,
    Readiness,
    ResolveBody,
    ResolveResponse,
    WidgetList,
    WidgetOut,
)
from service.settings import Settings

log = logging.getLogger("resolver")

PROBLEMS: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": "Not found"},
    422: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": "Invalid request"},
}


def server_timing(steps: list[dict[str, Any]]) -> str:
    """The per-node trace as a Server-Timing header (shown by browser dev tools)."""
    return ", ".join(f'{t["node"]};dur={t["ms"]};desc="{t["outcome"]}"' for t in steps)


def log_resolution(payload: dict[str, Any], steps: list[dict[str, Any]]) -> None:
    if log.isEnabledFor(logging.INFO):
        log.info(
            "resolved widget=%s source=%s cache_hit=%s rows=%d ms=%.2f",
            payload["widget_id"],
            payload["source"],
            payload["cache_hit"],
            payload["row_count"],
            sum(t["ms"] for t in steps),
        )


class BodyTooLarge(HTTPException):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body over {max_bytes} bytes")


class BodyLimit:
    """Refuse a request body over `max_bytes` with a 413 problem: at once when the declared
    Content-Length says so, else while reading (chunked bodies are counted as they arrive)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                response = problem_response(
                    Request(scope),
                    413,
                    f"request body over {self.max_bytes} bytes",
                    title="Content Too Large",
                )
                await response(scope, receive, send)
                return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)  # answered as a 413 problem
            return message

        await self.app(scope, counted, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(settings) as resources:
            app.state.resources = resources
            yield

    app = FastAPI(
        title="Widget data resolver",
        version="1.0.0",
        description="Fills dashboard widgets with data: live from PostgreSQL or the Databricks "
        "warehouse, cached, or flagged mock data when live data is unavailable.",
        lifespan=lifespan,
    )
    install_problem_handlers(app)

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    @app.post(
        "/v1/widgets/{widget_id}/data",
        response_model=ResolveResponse,
        responses=PROBLEMS,
        tags=["data"],
    )
    async def resolve_widget_data(
        widget_id: WidgetId,
        res: ResourcesDep,
        body: ResolveBody | None = None,
        trace: bool = Query(default=False, description="Include the per-node trace."),
    ) -> Response:
        """Resolve a widget's data: live, from the cache, or its flagged mock data."""
        spec = res.registry.widget(widget_id)
        if spec is None:
            raise ProblemError(
                404, f"widget {widget_id!r} is not registered", title="Widget not found"
            )
        body = body or ResolveBody()
        out = await res.resolve(widget_id, spec, refresh=body.refresh, dry_run=body.dry_run)
        payload = out["response"]
        steps = out.get("trace", [])
        log_resolution(payload, steps)
        if trace:
            payload = payload | {"trace": steps}
        return Response(
            orjson.dumps(payload),
            media_type="application/json",
            headers={"Server-Timing": server_timing(steps)},
        )

    @app.post("/v1/widgets/data", response_model=BatchResponse, responses=PROBLEMS, tags=["data"])
    async def resolve_many(body: BatchBody, res: ResourcesDep) -> Response:
        """Resolve several widgets concurrently (one round trip for a whole dashboard)."""
        specs = {wid: res.registry.widget(wid) for wid in body.widget_ids}
        found = [wid for wid, spec in specs.items() if spec is not None]
        outs = await asyncio.gather(
            *(
                res.resolve(wid, specs[wid], refresh=body.refresh, dry_run=body.dry_run)  # type: ignore[arg-type]
                for wid in found
            )
        )
        for out in outs:
            log_resolution(out["response"], out.get("trace", []))
        payload = {
            "results": [out["response"] for out in outs],
            "not_found": [wid for wid, spec in specs.items() if spec is None],
        }
        return Response(orjson.dumps(payload), media_type="application/json")

    @app.post(
        "/v1/widgets/sql/generate",
        response_model=GenerateResponse,
        responses={**PROBLEMS, 503: {"model": Problem, "content": {PROBLEM_JSON: {}}}},
        tags=["sql"],
    )
    async def generate_sql(body: GenerateBody, res: ResourcesDep) -> GenerateResponse:
        """Generate (without running) the checked Databricks SQL for a metric or a question."""
        return await res.generate_sql(body)

    @app.put(
        "/v1/widgets/{widget_id}",
        response_model=WidgetOut,
        responses={
            **PROBLEMS,
            201: {"model": WidgetOut, "description": "Created"},
            503: {
                "model": Problem,
                "content": {PROBLEM_JSON: {}},
                "description": "Store unavailable",
            },
        },
        tags=["widgets"],
    )
    async def put_widget(
        widget_id: WidgetId, spec: WidgetSpec, res: ResourcesDep, response: Response
    ) -> WidgetOut:
        """Create or replace a widget spec (validated against the metric catalog)."""
        problems = validate_intent(spec.data_intent, res.registry.metrics())
        routing = res.registry.routing(spec.data_intent.metric_id)
        if spec.data_intent.question and routing is not None and routing.backend != "databricks":
            problems.append(
                f"a question needs a warehouse metric: {spec.data_intent.metric_id!r} is served "
                f"by {routing.backend}"
            )
        if problems:
            raise ProblemError(
                422,
                "; ".join(problems),
                title="Invalid data_intent",
                type_="urn:problem:invalid-intent",
                errors=[{"loc": ["body", "data_intent"], "msg": p} for p in problems],
            )
        created = await res.put_widget(widget_id, spec)
        response.status_code = 201 if created else 200
        return WidgetOut(id=widget_id, spec=spec)

    @app.get(
        "/v1/widgets/{widget_id}", response_model=WidgetOut, responses=PROBLEMS, tags=["widgets"]
    )
    async def get_widget(widget_id: WidgetId, res: ResourcesDep) -> WidgetOut:
        """Read one widget spec."""
        spec = res.registry.widget(widget_id)
        if spec is None:
            raise ProblemError(
                404, f"widget {widget_id!r} is not registered", title="Widget not found"
            )
        return WidgetOut(id=widget_id, spec=spec)

    @app.get("/v1/widgets", response_model=WidgetList, tags=["widgets"])
    async def list_widgets(res: ResourcesDep) -> WidgetList:
        """List every registered widget."""
        items = sorted(res.registry.widgets().items())
        return WidgetList(widgets=[WidgetOut(id=k, spec=v) for k, v in items])

    @app.delete("/v1/widgets/{widget_id}", status_code=204, responses=PROBLEMS, tags=["widgets"])
    async def delete_widget(widget_id: WidgetId, res: ResourcesDep) -> Response:
        """Delete a widget."""
        if not await res.delete_widget(widget_id):
            raise ProblemError(
                404, f"widget {widget_id!r} is not registered", title="Widget not found"
            )
        return Response(status_code=204)

    @app.get("/v1/metrics", response_model=MetricList, tags=["metrics"])
    async def list_metrics(res: ResourcesDep) -> MetricList:
        """List the metric catalog with each metric's routing, dimensions and filter columns."""
        out = []
        for name, m in sorted(res.registry.metrics().items()):
            r = res.registry.routing(name)
            d = m.definition
            out.append(
                MetricOut(
                    name=name,
                    description=m.description,
                    unit=m.unit,
                    owner=m.owner,
                    backend=r.backend if r else None,
                    generator=r.generator if r else None,
                    ttl_seconds=r.ttl_seconds if r else None,
                    dimensions=list(d.dimensions),
                    filter_columns=sorted(d.allowed_filter_columns),
                    governance_status=m.governance_status,
                    last_validated_at=m.last_validated_at.isoformat()
                    if m.last_validated_at
                    else None,
                )
            )
        return MetricList(metrics=out)

    @app.get("/healthz", response_model=Health, tags=["ops"])
    async def healthz() -> Health:
        """Liveness: the process is up."""
        return Health(status="ok")

    @app.get("/readyz", response_model=Readiness, tags=["ops"])
    async def readyz(res: ResourcesDep) -> Readiness:
        """Readiness, with the state of PostgreSQL, the cache and the warehouse."""
        return Readiness.model_validate(await res.readiness())

    return app
