"""The OpenAPI document and its page: GET /openapi.json and GET /docs follow the data rule
(data:read; open to loopback in dev mode). Swagger UI comes from a Python package
(swagger-ui-bundle-v2, the dist files of Swagger UI 5), served here under `/docs/assets/`
with the dashboard's Content-Security-Policy: no CDN, no inline script, nothing loaded from
another host."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from swagger_ui_bundle import swagger_ui_path

from service.deps import DataReader
from service.problems import ProblemError
from service.routes.dashboard import PAGE_HEADERS, STATIC_DIR

SWAGGER_DIR = Path(str(swagger_ui_path))
# the only files of the distribution the page uses (its index.html and initializer point
# at a demo document on another host: not served)
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}

router = APIRouter(include_in_schema=False)


@router.get("/openapi.json")
async def openapi_document(request: Request, who: DataReader) -> dict[str, Any]:
    doc: dict[str, Any] = request.app.openapi()
    return doc


@router.get("/docs")
async def docs_page(who: DataReader) -> FileResponse:
    """Swagger UI over /openapi.json (docs.html loads docs.js, which starts it)."""
    return FileResponse(STATIC_DIR / "docs.html", media_type="text/html", headers=PAGE_HEADERS)


@router.get("/docs/assets/{name}")
async def docs_asset(name: str) -> FileResponse:
    """Swagger UI's script, stylesheet and icon, from the installed package."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise ProblemError(404, f"no docs asset {name!r}")
    return FileResponse(
        SWAGGER_DIR / name,
        media_type=media_type,
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"},
    )
