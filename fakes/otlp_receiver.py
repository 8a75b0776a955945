"""A local OTLP/HTTP trace receiver for tests (loopback only).

It speaks what the OpenTelemetry OTLP/HTTP exporter sends: `POST /v1/traces` with a
protobuf `ExportTraceServiceRequest` (optionally gzip-compressed), answered with an
`ExportTraceServiceResponse`. Decoded with opentelemetry-proto, each span is kept as a
`ReceivedSpan` (hex ids, attributes as plain Python values).

    with OtlpReceiver() as otlp:      # otlp.endpoint -> OTEL_EXPORTER_OTLP_ENDPOINT
        ...
        spans = otlp.wait_for(lambda spans: any(s.name == "degrade_or_return" for s in spans))
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

SPAN_KINDS = {
    0: "unspecified",
    1: "internal",
    2: "server",
    3: "client",
    4: "producer",
    5: "consumer",
}


def _value(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, which)


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    kind: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    status_code: int
    start_ns: int
    end_ns: int

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


@dataclass
class OtlpReceiver:
    host: str = "127.0.0.1"
    spans: list[ReceivedSpan] = field(default_factory=list)
    requests: int = 0
    content_types: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                req = ExportTraceServiceRequest()
                try:
                    req.ParseFromString(body)
                except Exception:  # a malformed body is the exporter's bug: say so
                    self.send_error(400, "not an ExportTraceServiceRequest")
                    return
                receiver._store(req, self.headers.get("Content-Type", ""))
                out = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        """The base URL, as OTEL_EXPORTER_OTLP_ENDPOINT takes it (the exporter adds /v1/traces)."""
        return f"http://{self.host}:{self._server.server_address[1]}"

    def _store(self, req: ExportTraceServiceRequest, content_type: str) -> None:
        got = []
        for rs in req.resource_spans:
            resource = {kv.key: _value(kv.value) for kv in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    got.append(
                        ReceivedSpan(
                            name=s.name,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex() or None,
                            kind=SPAN_KINDS.get(s.kind, str(s.kind)),
                            attributes={kv.key: _value(kv.value) for kv in s.attributes},
                            resource=resource,
                            status_code=s.status.code,
                            start_ns=s.start_time_unix_nano,
                            end_ns=s.end_time_unix_nano,
                        )
                    )
        with self._lock:
            self.requests += 1
            self.content_types.append(content_type)
            self.spans.extend(got)
            self._lock.notify_all()

    def wait_for(
        self, done: Callable[[list[ReceivedSpan]], bool], timeout: float = 10.0
    ) -> list[ReceivedSpan]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while not done(list(self.spans)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"spans received: {[s.name for s in self.spans]}")
                self._lock.wait(left)
            return list(self.spans)

    def clear(self) -> None:
        with self._lock:
            self.spans.clear()

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
