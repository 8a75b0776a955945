"""POST /v1/widgets/{widget_id}/data and POST /v1/widgets/data: resolve widgets."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from fastapi import APIRouter, Query, Response

from service.deps import DataReader, ResolverDep, ResourcesDep, WidgetDep, access_of
from service.problems import PROBLEMS
from service.schemas import BatchBody, BatchResponse, ResolveBody, ResolveResponse

log = logging.getLogger("resolver")
router = APIRouter(tags=["data"])


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


@router.post("/v1/widgets/{widget_id}/data", response_model=ResolveResponse, responses=PROBLEMS)
async def resolve_widget_data(
    widget: WidgetDep,
    res: ResourcesDep,
    resolver: ResolverDep,
    body: ResolveBody | None = None,
    trace: bool = Query(default=False, description="Include the per-node trace."),
) -> Response:
    """Resolve a widget's data: live, from the cache, or its flagged mock data. Scope
    `data:read`; the caller's row filters apply to every query (and to the cache key)."""
    body = body or ResolveBody()
    out = await resolver.resolve(
        widget.id,
        widget.spec,
        refresh=body.refresh,
        dry_run=body.dry_run,
        access=access_of(res, widget.principal),
    )
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


@router.post("/v1/widgets/data", response_model=BatchResponse, responses=PROBLEMS)
async def resolve_many(
    body: BatchBody,
    res: ResourcesDep,
    resolver: ResolverDep,
    who: DataReader,
    trace: bool = Query(default=False, description="Include each answer's per-node trace."),
) -> Response:
    """Resolve several widgets concurrently (one round trip for a whole dashboard).
    Scope `data:read`; another tenant's widget is listed in `not_found`."""
    specs = {wid: res.registry.widget(wid, who.tenant) for wid in body.widget_ids}
    found = [(wid, spec) for wid, spec in specs.items() if spec is not None]
    access = access_of(res, who)
    outs = await asyncio.gather(
        *(
            resolver.resolve(wid, spec, refresh=body.refresh, dry_run=body.dry_run, access=access)
            for wid, spec in found
        )
    )
    for out in outs:
        log_resolution(out["response"], out.get("trace", []))
    payload = {
        "results": [
            out["response"] | {"trace": out.get("trace", [])} if trace else out["response"]
            for out in outs
        ],
        "not_found": [wid for wid, spec in specs.items() if spec is None],
    }
    return Response(orjson.dumps(payload), media_type="application/json")
