"""Plain-ASGI request instrumentation (no web framework imported).

For every HTTP request: RED metrics by route template (the matched route's path, e.g.
`/v1/widgets/{widget_id}/data`; `unmatched` when none), method and status class; the
`X-Request-ID` echoed or generated and set on the response; and, when tracing is on, a
SERVER span whose parent is the caller's W3C `traceparent`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from observability import metrics as m
from observability.logs import REQUEST_ID_HEADER, request_id_from, request_id_var
from observability.tracing import Tracing, extract_context

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_RID = REQUEST_ID_HEADER.encode()
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class RequestTelemetry:
    """Outermost middleware. `metrics=False` skips RED metrics (request ids stay)."""

    def __init__(self, app: ASGIApp, *, tracing: Tracing, metrics: bool = True) -> None:
        self.app, self.tracing, self.metrics = app, tracing, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        incoming = None
        for name, value in scope["headers"]:
            if name == _RID:
                incoming = value
                break
        rid = request_id_from(incoming)
        rid_header = (_RID, rid.encode())
        token = request_id_var.set(rid)
        status = 500
        tracer = self.tracing.tracer
        span: Any = None
        otel_token: Any = None
        if tracer is not None:
            span = tracer.start_span(
                f"{scope['method']} {scope['path']}",
                context=extract_context(scope["headers"]),
                kind=trace.SpanKind.SERVER,
                attributes={
                    "http.request.method": scope["method"],
                    "url.path": scope["path"],
                    "wdr.request_id": rid,
                },
            )
            otel_token = otel_context.attach(trace.set_span_in_context(span))

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        if self.metrics:
            m.HTTP_IN_PROGRESS.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException as exc:
            if span is not None:
                span.record_exception(exc)
            raise
        finally:
            route = route_template(scope)
            method = scope["method"] if scope["method"] in _KNOWN_METHODS else "OTHER"
            if self.metrics:
                m.HTTP_IN_PROGRESS.dec()
                m.child(m.HTTP_REQUESTS, route, method, f"{status // 100}xx").inc()
                m.child(m.HTTP_DURATION, route, method).observe(time.perf_counter() - t0)
            if span is not None:
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(trace.Status(trace.StatusCode.ERROR))
                span.end()
                otel_context.detach(otel_token)
            request_id_var.reset(token)
