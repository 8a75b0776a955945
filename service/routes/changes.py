"""GET /v1/changes: the widgets whose answers changed, pushed to an open dashboard
(server-sent events) when their data changes (service/changes.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from service.deps import DataReader
from service.problems import AUTH_PROBLEMS

router = APIRouter(tags=["data"])

KEEPALIVE_S = 15.0


@router.get(
    "/v1/changes",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "Server-sent events: `ready` once subscribed, then one `changed` "
            "event (`{widget_id, source}`) each time a widget of the caller's tenant has a "
            "newer answer because its data changed; re-fetch it. A comment line every 15 s "
            "keeps the stream open.",
        },
        204: {"description": "Change-driven refresh is off (CHANGE_REFRESH=false): poll."},
        **AUTH_PROBLEMS,
    },
)
async def widget_changes(request: Request, who: DataReader) -> Response:
    """Scope `data:read`. Events name widgets only (never data): the dashboard re-fetches
    each one with its own credentials and row filters."""
    watcher = getattr(request.app.state, "changes", None)
    if watcher is None:
        # not an error: nothing to watch here (a 204 also tells an EventSource to stop)
        return Response(status_code=204)
    hub = watcher.hub

    async def events() -> AsyncIterator[bytes]:
        with hub.subscribe(who.tenant) as queue:
            yield b"event: ready\ndata: {}\n\n"
            while True:
                try:
                    change = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                data = orjson.dumps({"widget_id": change.widget_id, "source": change.source})
                yield b"event: changed\ndata: " + data + b"\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
