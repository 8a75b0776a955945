"""Operational telemetry: Prometheus metric families, OpenTelemetry tracing, request ids and
JSON logs. Pure-ish: prometheus-client, the OpenTelemetry API/SDK and the standard library
only; no web framework (the ASGI middleware speaks plain ASGI)."""
