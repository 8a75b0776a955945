"""GET /healthz (liveness) and GET /readyz (readiness of every dependency, and the auth
mode), both open; the OpenAPI document and its page follow the data rule (data:read)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

from service.deps import DataReader, ResourcesDep
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
