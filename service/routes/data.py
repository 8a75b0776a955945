"""POST /v1/widgets/{widget_id}/data, its live stream POST /v1/widgets/{widget_id}/data/stream,
and POST /v1/widgets/data: resolve widgets."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse

from service.deps import DataCallDep, DataReader, ResolverDep, ResourcesDep, access_of
from service.problems import BODY_PROBLEMS
from service.schemas import BatchBody, BatchResponse, ResolveBody, ResolveResponse

log = logging.getLogger("resolver")
router = APIRouter(tags=["data"])


def server_timing(steps: list[dict[str, Any]]) -> str:
    """The per-node trace as a Server-Timing header (shown by browser dev tools)."""
    return ", ".join(f'{t["node"]};dur={t["ms"]};desc="{t["outcome"]}"' for t in steps)


def log_resolution(payload: dict[str, Any], steps: list[dict[str, Any]]) -> None:
    """The one log line per resolution answered (JSON with LOG_FORMAT=json, where the
    formatter adds the request id and trace id)."""
    if log.isEnabledFor(logging.INFO):
        ms = round(sum(t["ms"] for t in steps), 3)
        log.info(
            "resolved widget=%s source=%s cache_hit=%s rows=%d ms=%.2f",
            payload["widget_id"],
            payload["source"],
            payload["cache_hit"],
            payload["row_count"],
            ms,
            extra={
                "fields": {
                    "event": "resolved",
                    "widget_id": payload["widget_id"],
                    "metric_id": payload["metric_id"],
                    "backend": payload["backend"],
                    "source": payload["source"],
                    "cache_hit": payload["cache_hit"],
                    "live_data_unavailable": payload["live_data_unavailable"],
                    "dry_run": payload["dry_run"],
                    "rows": payload["row_count"],
                    "ms": ms,
                }
            },
        )


@router.post(
    "/v1/widgets/{widget_id}/data", response_model=ResolveResponse, responses=BODY_PROBLEMS
)
async def resolve_widget_data(
    call: DataCallDep,
    body: ResolveBody | None = None,
    trace: bool = Query(default=False, description="Include the per-node trace."),
) -> Response:
    """Resolve a widget's data: live, from the cache, or its flagged mock data. Scope
    `data:read`; the caller's row filters apply to every query (and to the cache key)."""
    body = body or ResolveBody()
    widget = call.widget
    out = await call.resolver.resolve(
        widget.id, widget.spec, refresh=body.refresh, dry_run=body.dry_run, access=call.access
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


def _sse(event: str, data: bytes) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


@router.post(
    "/v1/widgets/{widget_id}/data/stream",
    response_class=StreamingResponse,
    responses={
        **BODY_PROBLEMS,
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "Server-sent events: one `node` event per graph node as it "
            "finishes (`{node, ms, outcome}`), then one `result` event whose data is exactly "
            "the body `POST /v1/widgets/{widget_id}/data` returns (or an `error` event).",
        },
    },
)
async def stream_widget_data(
    call: DataCallDep,
    body: ResolveBody | None = None,
    trace: bool = Query(default=False, description="Include the per-node trace in the result."),
) -> StreamingResponse:
    """Resolve a widget as `/data` does (scope `data:read`, the caller's row filters),
    streaming each node's event as it finishes. A client that disconnects stops its
    stream; a resolution shared with others goes on."""
    body = body or ResolveBody()
    widget = call.widget
    flight = call.resolver.join(
        widget.id, widget.spec, refresh=body.refresh, dry_run=body.dry_run, access=call.access
    )

    async def events() -> AsyncIterator[bytes]:
        async for entry in flight.node_events():
            yield _sse("node", orjson.dumps(entry))
        try:
            out = await flight.result()
        except Exception as exc:  # a bug, not a degrade kind: say so in the stream
            log.exception("resolution of %s failed", widget.id)
            problem = {"type": "about:blank", "title": "Internal Server Error", "status": 500}
            yield _sse("error", orjson.dumps(problem | {"detail": type(exc).__name__}))
            return
        payload = out["response"]
        steps = out.get("trace", [])
        log_resolution(payload, steps)
        if trace:
            payload = payload | {"trace": steps}
        yield _sse("result", orjson.dumps(payload))

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post("/v1/widgets/data", response_model=BatchResponse, responses=BODY_PROBLEMS)
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
