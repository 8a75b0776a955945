"""GET /healthz (liveness) and GET /readyz (readiness of every dependency, and the auth
mode), both open; the OpenAPI document and its page, and GET /metrics (Prometheus text
format), follow the data rule (data:read; open to loopback in dev mode)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

from observability.metrics import render
from service.deps import DataReader, ResourcesDep
from service.problems import AUTH_PROBLEMS
from service.schemas import Health, Readiness

router = APIRouter(tags=["ops"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Liveness: the process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness)
async def readyz(res: ResourcesDep) -> Readiness:
    """Readiness, with the state of PostgreSQL, the cache, the warehouse and the auth mode."""
    return Readiness.model_validate(await res.readiness())


@router.get("/openapi.json", include_in_schema=False)
async def openapi_document(request: Request, who: DataReader) -> dict[str, Any]:
    doc: dict[str, Any] = request.app.openapi()
    return doc


@router.get("/docs", include_in_schema=False)
async def docs_page(who: DataReader) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title="Widget data resolver")


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        **AUTH_PROBLEMS,
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "Prometheus text exposition (version 0.0.4)",
        },
    },
)
async def metrics(who: DataReader) -> Response:
    """Prometheus metrics of this instance (of every worker on the host in multiprocess
    mode): requests by route, resolutions by backend/source/outcome, node durations, cache
    lookups, backend statements, safety rejections, LLM requests and tokens. Scope
    `data:read` (a scraper presents a bearer token or an X-API-Key)."""
    body, content_type = render()
    return Response(body, media_type=content_type)
