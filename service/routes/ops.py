"""GET /healthz (liveness) and GET /readyz (readiness of every dependency)."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import ResourcesDep
from service.schemas import Health, Readiness

router = APIRouter(tags=["ops"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Liveness: the process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness)
async def readyz(res: ResourcesDep) -> Readiness:
    """Readiness, with the state of PostgreSQL, the cache and the warehouse."""
    return Readiness.model_validate(await res.readiness())
