"""observability/: metric families, multiprocess mode, tracing setup, request ids, JSON logs."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fakes.otlp_receiver import OtlpReceiver
from observability import metrics as m
from observability.logs import JsonFormatter, request_id_from, request_id_var
from observability.tracing import extract_context, setup_tracing, tracing_configured

FORBIDDEN_LABELS = {"widget", "widget_id", "user", "user_id", "tenant", "tenant_id", "sql", "path"}
EXPECTED = {
    "wdr_http_requests": "counter",
    "wdr_http_request_duration_seconds": "histogram",
    "wdr_http_requests_in_progress": "gauge",
    "wdr_resolutions": "counter",
    "wdr_node_duration_seconds": "histogram",
    "wdr_node_outcomes": "counter",
    "wdr_cache_lookups": "counter",
    "wdr_singleflight_followers": "counter",
    "wdr_lease_followers": "counter",
    "wdr_backend_statement_duration_seconds": "histogram",
    "wdr_backend_statement_errors": "counter",
    "wdr_safety_rejections": "counter",
    "wdr_llm_requests": "counter",
    "wdr_llm_request_duration_seconds": "histogram",
    "wdr_llm_tokens": "counter",
}


def test_every_family_is_exported_with_bounded_labels() -> None:
    body, content_type = m.render()
    assert content_type.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    for name, kind in EXPECTED.items():
        assert families[name].type == kind, name
    for metric in (m.HTTP_REQUESTS, m.RESOLUTIONS, m.NODE_DURATION, m.CACHE_LOOKUPS):
        assert not set(metric._labelnames) & FORBIDDEN_LABELS
    for name in EXPECTED:
        obj = next(o for o in vars(m).values() if getattr(o, "_name", None) == name)
        assert not set(obj._labelnames) & FORBIDDEN_LABELS, name


def test_node_buckets_span_half_a_millisecond_to_two_minutes() -> None:
    m.NODE_DURATION.labels("route").observe(0.0001)
    m.NODE_DURATION.labels("route").observe(90.0)
    fam = next(
        f
        for f in text_string_to_metric_families(m.render()[0].decode())
        if f.name == "wdr_node_duration_seconds"
    )
    bounds = sorted(
        float(s.labels["le"])
        for s in fam.samples
        if s.name.endswith("_bucket") and s.labels["node"] == "route"
    )
    assert bounds[0] == 0.0005 and bounds[-2] == 120.0 and bounds[-1] == float("inf")
    counts = {
        float(s.labels["le"]): s.value
        for s in fam.samples
        if s.name.endswith("_bucket") and s.labels["node"] == "route"
    }
    assert counts[120.0] - counts[60.0] >= 1  # the 90 s observation is not lumped in +Inf


def test_cache_results_start_at_zero() -> None:
    fams = {f.name: f for f in text_string_to_metric_families(m.render()[0].decode())}
    results = {s.labels["result"] for s in fams["wdr_cache_lookups"].samples}
    assert results >= {"hit", "miss", "stale", "error"}


CHILD = textwrap.dedent(
    """
    import sys
    from observability import metrics as m
    m.RESOLUTIONS.labels("postgres", "postgres", "live").inc(int(sys.argv[1]))
    m.NODE_DURATION.labels("route").observe(0.001)
    """
)


def test_multiprocess_mode_sums_every_worker(tmp_path: Path) -> None:
    env = os.environ | {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for n in (2, 3):
        subprocess.run([sys.executable, "-c", CHILD, str(n)], env=env, check=True)
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from observability import metrics as m; print(m.render()[0].decode())",
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    fams = {f.name: f for f in text_string_to_metric_families(out)}
    live = [
        s
        for s in fams["wdr_resolutions"].samples
        if s.name == "wdr_resolutions_total" and s.labels.get("outcome") == "live"
    ]
    assert sum(s.value for s in live) == 5
    count = [s for s in fams["wdr_node_duration_seconds"].samples if s.name.endswith("_count")]
    assert sum(s.value for s in count) == 2


def test_tracing_is_off_and_imports_no_sdk_without_an_endpoint() -> None:
    assert not tracing_configured({})
    assert not tracing_configured(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "true"}
    )
    assert tracing_configured(
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1/v1/traces"}
    )
    code = (
        "import os, sys; os.environ.pop('OTEL_EXPORTER_OTLP_ENDPOINT', None);"
        "from observability.tracing import setup_tracing; t = setup_tracing({});"
        "assert t.tracer is None; assert 'opentelemetry.sdk.trace' not in sys.modules, 'sdk loaded'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_spans_reach_an_otlp_http_receiver_with_the_callers_parent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with OtlpReceiver() as otlp:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint)
        monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
        tracing = setup_tracing()
        assert tracing.tracer is not None
        parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        ctx = extract_context([(b"traceparent", parent.encode())])
        with tracing.tracer.start_as_current_span("unit", context=ctx) as span:
            span.set_attribute("wdr.node", "route")
        assert tracing.force_flush()
        spans = otlp.wait_for(lambda s: any(x.name == "unit" for x in s))
        tracing.shutdown()
    got = next(s for s in spans if s.name == "unit")
    assert got.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert got.parent_span_id == "b7ad6b7169203331"
    assert got.attributes == {"wdr.node": "route"}
    assert got.resource["service.name"] == "widget-data-resolver"
    assert otlp.content_types[0] == "application/x-protobuf"


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("abc-123", True),
        ("0af7651916cd43dd8448eb211c80319c", True),
        ("bad id\nwith newline", False),
        ("x" * 129, False),
        ("", False),
        (None, False),
    ],
)
def test_request_ids_are_taken_only_when_safe(given: str | None, kept: bool) -> None:
    rid = request_id_from(given)
    assert (rid == given) is kept
    assert 1 <= len(rid) <= 128 and "\n" not in rid


def test_json_log_line_carries_request_and_trace_ids() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("wdr-test-json")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    token = request_id_var.set("req-42")
    try:
        log.info("resolved %s", "w1", extra={"fields": {"widget_id": "w1", "source": "postgres"}})
    finally:
        request_id_var.reset(token)
        log.removeHandler(handler)
    doc = json.loads(stream.getvalue())
    assert doc["msg"] == "resolved w1" and doc["request_id"] == "req-42"
    assert doc["widget_id"] == "w1" and doc["source"] == "postgres" and doc["level"] == "INFO"
    assert "trace_id" in doc and doc["trace_id"] is None  # no span here


def test_resolver_serve_logs_json_lines_when_asked() -> None:
    code = (
        "import logging; from observability.logs import configure_logging;"
        "configure_logging('INFO', 'json'); logging.getLogger('resolver').info('hello %s', 'x')"
    )
    err = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stderr
    doc = json.loads(err.strip().splitlines()[-1])
    assert doc["msg"] == "hello x" and doc["logger"] == "resolver" and doc["level"] == "INFO"
    assert set(doc) >= {"ts", "request_id", "trace_id"}
