"""GET /healthz (liveness) and GET /readyz (readiness), both open: /readyz tells anyone
its status, and its details (every dependency, the auth mode, the registry) only to a
caller holding `ops:read` (the dev principal holds every scope). GET /metrics (Prometheus
text format) follows the data rule (data:read; open to loopback in dev mode)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from observability.metrics import render
from service.deps import DataReader, MaybePrincipal, ResourcesDep
from service.problems import AUTH_PROBLEMS, PROBLEMS
from service.schemas import Health, Readiness

router = APIRouter(tags=["ops"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Liveness: the process is up."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    response_model_exclude_none=True,
    responses={401: PROBLEMS[401]},  # presented credentials that do not verify
)
async def readyz(res: ResourcesDep, who: MaybePrincipal) -> Readiness:
    """Readiness: `status` (`ok` / `degraded`) for anyone; with the scope `ops:read`, also
    `components`: the state of PostgreSQL, the cache, the warehouse, the model, the
    registry and the auth mode. Presented credentials are verified (bad ones: a 401)."""
    ready = await res.readiness()
    if who is None or not who.has("ops:read"):
        return Readiness(status=ready["status"])
    return Readiness.model_validate(ready)


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
