"""GET /v1/audit: the caller's tenant's widget writes, newest first (scope audit:read)."""

from __future__ import annotations

from fastapi import APIRouter, Query

from service.deps import AuditReader, ResourcesDep
from service.problems import PROBLEMS
from service.schemas import AuditEntryOut, AuditList

router = APIRouter(tags=["audit"])


@router.get("/v1/audit", response_model=AuditList, responses=PROBLEMS)
async def list_audit(
    res: ResourcesDep,
    who: AuditReader,
    limit: int = Query(default=100, ge=1, le=1000),
    before_id: int | None = Query(default=None, ge=1, le=2**63 - 1),
) -> AuditList:
    """Every PUT and DELETE of the caller's tenant: time, subject, action, widget id and
    hashes of the spec before and after. Written in the same transaction as the write."""
    rows = await res.store.audit_entries(who.tenant, limit=limit, before_id=before_id)
    entries = [AuditEntryOut.model_validate(r | {"at": r["at"].isoformat()}) for r in rows]
    return AuditList(
        entries=entries, next_before_id=entries[-1].id if len(entries) == limit else None
    )
