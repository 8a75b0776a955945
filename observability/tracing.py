"""OpenTelemetry tracing, configured by the standard OTEL_* environment variables.

Off unless OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set: then
`Tracing.tracer` is None and every caller skips span work entirely (a single `is None`
check), so an unconfigured service pays nothing. On: the SDK's TracerProvider with a
BatchSpanProcessor and the OTLP/HTTP (protobuf) span exporter, which read their own
standard variables (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _COMPRESSION, OTEL_BSP_*,
OTEL_TRACES_SAMPLER, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES). OTEL_SDK_DISABLED=true or
OTEL_TRACES_EXPORTER=none turn it off again.

The provider is owned by the service instance (not installed globally), so two services in
one process (tests) never share spans. W3C `traceparent`/`tracestate` come in through the
globally configured propagator (OTEL_PROPAGATORS, default tracecontext + baggage).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context as OtelContext

DEFAULT_SERVICE_NAME = "widget-data-resolver"
INSTRUMENTATION = "widget-data-resolver"


def tracing_configured(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


@dataclass
class Tracing:
    """`tracer` is None when tracing is off."""

    tracer: trace.Tracer | None = None
    provider: Any = None  # opentelemetry.sdk.trace.TracerProvider when on
    record_sql: bool = False  # put SQL text on spans (else only its hash)

    @property
    def enabled(self) -> bool:
        return self.tracer is not None

    def force_flush(self, timeout_ms: int = 5000) -> bool:
        return bool(self.provider.force_flush(timeout_ms)) if self.provider else True

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()
            self.provider = None
            self.tracer = None


def setup_tracing(
    env: Mapping[str, str] | None = None, *, record_sql: bool = False, exporter: Any = None
) -> Tracing:
    """A Tracing for this service instance: off (no SDK imported) unless configured.
    `exporter` replaces the OTLP exporter (tests)."""
    if exporter is None and not tracing_configured(env):
        return Tracing(record_sql=record_sql)
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    env = os.environ if env is None else env
    attrs = {} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: DEFAULT_SERVICE_NAME}
    provider = TracerProvider(resource=Resource.create(attrs))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return Tracing(
        tracer=provider.get_tracer(INSTRUMENTATION), provider=provider, record_sql=record_sql
    )


def extract_context(headers: list[tuple[bytes, bytes]]) -> OtelContext:
    """The caller's trace context from raw ASGI headers (W3C traceparent/tracestate)."""
    carrier: dict[str, str] = {}
    for name, value in headers:
        key = name.decode("latin-1").lower()
        if key in ("traceparent", "tracestate", "baggage"):
            carrier[key] = value.decode("latin-1")
    return propagate.extract(carrier) if carrier else OtelContext()


def inject_headers(headers: dict[str, str]) -> dict[str, str]:
    """Add the current trace context (traceparent) to outgoing request headers."""
    propagate.inject(headers)
    return headers


def current_trace_id() -> str | None:
    """The current span's trace id as 32 hex digits, or None outside a recorded span."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def sql_hash(sql: str) -> str:
    return hashlib.sha256(sql.encode()).hexdigest()[:16]
