"""The dashboard page: static files shipped in the package (service/static), served by the
service itself at `/` and `/dashboard`, with the vendored charting library under `/static`.
No CDN and no build step: the page talks to the same origin's JSON API."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(str(files("service") / "static"))

# Same-origin only: scripts and data from this service, nothing from anywhere else.
# ECharts writes style attributes into its tooltips, hence 'unsafe-inline' for styles only.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.api_route("/", methods=["GET", "HEAD"])
@router.api_route("/dashboard", methods=["GET", "HEAD"])
async def dashboard_page() -> FileResponse:
    """The dashboard: every widget of the caller's tenant, drawn by kind, with its source."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=PAGE_HEADERS)


class _StaticFiles(StaticFiles):
    """Static files that revalidate (ETag) instead of being cached blindly, nosniff'd."""

    async def get_response(self, path, scope):  # type: ignore[no-untyped-def]
        response = await super().get_response(path, scope)
        response.headers.setdefault("Cache-Control", "no-cache")
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


router.mount("/static", _StaticFiles(directory=STATIC_DIR), name="static")
