"""Integration: /metrics, request ids, JSON logs, OTLP traces and the SSE node stream, against
the real service served by uvicorn on a loopback port (real PostgreSQL and Redis, a local
Bedrock Converse server, a local OTLP/HTTP receiver)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from fakes.bedrock_converse import MODEL_ID, ConverseServer, Slow, Text, ToolCall
from fakes.otlp_receiver import OtlpReceiver, ReceivedSpan
from observability.logs import JsonFormatter
from service.app import create_app
from service.settings import Settings
from tests.support.servers import (
    REDIS_URL,
    create_database,
    drop_database,
    environment,
    free_port,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

DATA = "/v1/widgets/{widget_id}/data"
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def otlp() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


class Live:
    def __init__(self, url: str, app: Any, converse: ConverseServer) -> None:
        self.url, self.app, self.converse = url, app, converse
        self.client = httpx.AsyncClient(base_url=url, timeout=30)

    async def data(self, widget_id: str, *, trace: bool = False, **body: Any) -> httpx.Response:
        return await self.client.post(
            DATA.format(widget_id=widget_id),
            json=body or None,
            params={"trace": "true"} if trace else None,
        )

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        r = await self.client.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        out = {}
        for fam in text_string_to_metric_families(r.text):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    async def question_widget(self, wid: str, question: str) -> None:
        spec = {
            "title": wid,
            "kind": "table",
            "mock_data": [{"model": "mock", "claims": 1}],
            "data_intent": {
                "metric_id": "claims_insights",
                "time_range": "last_30d",
                "question": question,
            },
        }
        r = await self.client.put(f"/v1/widgets/{wid}", json=spec)
        assert r.status_code in (200, 201), r.text
        # single flight keys on the spec object: wait out the registry's reload after the
        # write (LISTEN/NOTIFY) so concurrent requests below see one and the same spec
        registry = self.app.state.resources.registry
        for _ in range(50):
            first = registry.widget(wid)
            await asyncio.sleep(0.1)
            if registry.widget(wid) is first:
                break


def sample(m: dict, name: str, **labels: str) -> float:
    return m.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def live(
    converse: ConverseServer, otlp: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Live]:
    url = create_database()
    settings = Settings(
        database_url=url,
        seed_demo=True,  # a fresh database: the demo widgets
        redis_url=REDIS_URL,
        cache_prefix=f"wdr-test:{Path(url).name}:",
        data_dir=tmp_path_factory.mktemp("data"),
        bedrock_model_id=MODEL_ID,
        bedrock_endpoint_url=converse.url,
        bedrock_timeout_s=5.0,
    )
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50"}
    with environment(env):
        app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        svc = Live(f"http://127.0.0.1:{port}", app, converse)
        yield svc
        await svc.client.aclose()
    finally:
        server.should_exit = True
        await task
        drop_database(url)


@pytest.fixture(autouse=True)
def _reset(converse: ConverseServer) -> None:
    converse.reset()


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("resolver")
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def parse_sse(text: str) -> list[tuple[str, Any]]:
    events = []
    for block in text.strip().split("\n\n"):
        name, data = "message", []
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        events.append((name, json.loads("\n".join(data))))
    return events


# ------------------------------------------------------------------ metrics


async def test_metrics_move_by_exactly_the_resolutions_made(live: Live) -> None:
    await live.question_widget("obs-degraded", "Which models fail most?")
    live.converse.script(Text())  # the model answers without SQL: llm_invalid_output
    before = await live.metrics()
    traces = []
    for wid, body in (
        ("issues-by-severity", {"refresh": True}),  # live
        ("issues-by-severity", {}),  # cached
        ("claims-paid-weekly", {"dry_run": True}),  # dry run
        ("obs-degraded", {}),  # mock
    ):
        r = await live.data(wid, trace=True, **body)
        assert r.status_code == 200
        traces.append(r.json())
    assert [b["source"] for b in traces] == [
        "postgres",
        "postgres",
        "databricks",
        "llm_invalid_output",
    ]
    assert (await live.client.post(DATA.format(widget_id="no-such-widget"))).status_code == 404
    after = await live.metrics()

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    res = "wdr_resolutions_total"
    assert delta(res, backend="postgres", source="postgres", outcome="live") == 1
    assert delta(res, backend="postgres", source="postgres", outcome="cached") == 1
    assert delta(res, backend="databricks", source="databricks", outcome="dry_run") == 1
    assert delta(res, backend="databricks", source="llm_invalid_output", outcome="mock") == 1
    total = sum(v for (n, _), v in after.items() if n == res) - sum(
        v for (n, _), v in before.items() if n == res
    )
    assert total == 4
    ran = [t["node"] for b in traces for t in b["trace"]]
    for node in set(ran) | {"databricks_execute"}:
        assert delta("wdr_node_duration_seconds_count", node=node) == ran.count(node), node
    assert delta("wdr_cache_lookups_total", result="hit") == 1
    assert delta("wdr_cache_lookups_total", result="miss") == 1
    assert delta("wdr_llm_requests_total", outcome="llm_invalid_output") == 1
    assert delta("wdr_backend_statement_duration_seconds_count", backend="postgres") == 1
    route = "/v1/widgets/{widget_id}/data"
    assert delta("wdr_http_requests_total", route=route, method="POST", status_class="2xx") == 4
    assert delta("wdr_http_requests_total", route=route, method="POST", status_class="4xx") == 1
    assert delta("wdr_http_request_duration_seconds_count", route=route, method="POST") == 5
    # bounded labels: no widget id anywhere in the exposition
    text = (await live.client.get("/metrics")).text
    assert "issues-by-severity" not in text and "obs-degraded" not in text


# ------------------------------------------------------------------ request ids and logs


async def test_request_id_is_echoed_or_generated(live: Live) -> None:
    r = await live.client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r1, r2 = await live.client.get("/healthz"), await live.client.get("/healthz")
    assert (
        len(r1.headers["x-request-id"]) == 32
        and r1.headers["x-request-id"] != r2.headers["x-request-id"]
    )
    bad = await live.client.get("/healthz", headers={"X-Request-ID": "x" * 300})
    assert bad.headers["x-request-id"] != "x" * 300
    missing = await live.client.post(
        DATA.format(widget_id="nope"), headers={"X-Request-ID": "r-404"}
    )
    assert missing.status_code == 404 and missing.headers["x-request-id"] == "r-404"


# ------------------------------------------------------------------ traces


def _spans_of(otlp: OtlpReceiver, trace_id: str, names: set[str]) -> list[ReceivedSpan]:
    return [
        s
        for s in otlp.wait_for(
            lambda spans: names <= {s.name for s in spans if s.trace_id == trace_id}
        )
        if s.trace_id == trace_id
    ]


async def test_one_request_is_one_trace_under_the_callers_traceparent(
    live: Live, otlp: OtlpReceiver, json_log: io.StringIO
) -> None:
    r = await live.client.post(
        DATA.format(widget_id="open-issues-kpi"),
        json={"refresh": True},
        headers={
            "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01",
            "X-Request-ID": "trace-me",
        },
    )
    assert r.status_code == 200
    nodes = {"route", "cache_lookup", "postgres_query", "degrade_or_return"}
    spans = _spans_of(otlp, CALLER_TRACE, nodes | {"POST /v1/widgets/{widget_id}/data"})
    by_name = {s.name: s for s in spans}
    server = by_name["POST /v1/widgets/{widget_id}/data"]
    assert server.kind == "server" and server.parent_span_id == CALLER_SPAN
    assert server.attributes["http.route"] == "/v1/widgets/{widget_id}/data"
    assert server.attributes["http.response.status_code"] == 200
    assert server.resource["service.name"] == "widget-data-resolver"
    for name in nodes:
        assert by_name[name].parent_span_id == server.span_id, name
        assert by_name[name].attributes["wdr.widget_id"] == "open-issues-kpi"
    assert len([s for s in spans if s.name in nodes]) == 4  # one span per node that ran
    pg = by_name["postgres_query"].attributes
    assert pg["wdr.backend"] == "postgres" and len(pg["wdr.sql_hash"]) == 16
    assert "db.query.text" not in pg
    final = by_name["degrade_or_return"].attributes
    assert final["wdr.source"] == "postgres" and final["wdr.row_count"] > 0
    assert final["wdr.cache_hit"] is False and final["wdr.metric_id"]
    # the one log line for the resolution carries the same request id and trace id
    lines = [json.loads(x) for x in json_log.getvalue().splitlines()]
    resolved = [x for x in lines if x.get("event") == "resolved"]
    assert len(resolved) == 1
    assert resolved[0]["request_id"] == "trace-me" and resolved[0]["trace_id"] == CALLER_TRACE
    assert resolved[0]["widget_id"] == "open-issues-kpi" and resolved[0]["source"] == "postgres"


async def test_a_degraded_node_span_names_its_failure_kind(live: Live, otlp: OtlpReceiver) -> None:
    await live.question_widget("obs-degraded-span", "How many devices fail?")
    live.converse.script(Text())
    trace_id = "5bf92f3577b34da6a3ce929d0e0e4737"
    r = await live.client.post(
        DATA.format(widget_id="obs-degraded-span"),
        headers={"traceparent": f"00-{trace_id}-{CALLER_SPAN}-01"},
    )
    assert r.json()["source"] == "llm_invalid_output"
    spans = {s.name: s for s in _spans_of(otlp, trace_id, {"sql_generate", "mock_data"})}
    assert spans["sql_generate"].attributes["wdr.failure_kind"] == "llm_invalid_output"
    assert spans["sql_generate"].status_code == 2  # ERROR
    assert spans["mock_data"].attributes["wdr.row_count"] == 1


async def test_the_trace_continues_into_the_bedrock_call(live: Live, otlp: OtlpReceiver) -> None:
    await live.question_widget("obs-llm-trace", "Claims by channel?")
    trace_id = "6bf92f3577b34da6a3ce929d0e0e4738"
    r = await live.client.post(
        DATA.format(widget_id="obs-llm-trace"),
        headers={"traceparent": f"00-{trace_id}-{CALLER_SPAN}-01"},
    )
    assert r.json()["source"] == "databricks"
    spans = {s.name: s for s in _spans_of(otlp, trace_id, {"sql_generate"})}
    sent = live.converse.requests[0].headers
    traceparent = {k.lower(): v for k, v in sent.items()}["traceparent"]
    assert traceparent.split("-")[1] == trace_id
    assert traceparent.split("-")[2] == spans["sql_generate"].span_id


# ------------------------------------------------------------------ the stream


async def test_stream_sends_node_events_in_order_then_data_body(live: Live) -> None:
    await live.question_widget("obs-stream", "Top device models by claims?")
    live.converse.script(Slow(2.0, ToolCall()))
    path = DATA.format(widget_id="obs-stream")
    stream_task = asyncio.create_task(live.client.post(path + "/stream"))
    flights = live.app.state.resolver.flights.inflight
    for _ in range(200):  # the stream leads (its run waits on the model) ...
        if any(key[0] == "obs-stream" for key in flights):
            break
        await asyncio.sleep(0.025)
    plain = await live.client.post(path)  # ... and /data joins the same resolution
    streamed = await stream_task
    assert streamed.status_code == 200
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(streamed.text)
    names = [e for e, _ in events]
    assert names == ["node"] * 6 + ["result"]
    assert [d["node"] for _, d in events[:-1]] == [
        "route",
        "cache_lookup",
        "sql_generate",
        "safety_check",
        "databricks_execute",
        "degrade_or_return",
    ]
    assert all(set(d) == {"node", "ms", "outcome"} for _, d in events[:-1])
    assert events[-1][1] == plain.json()  # exactly /data's body
    assert plain.json()["source"] == "databricks" and len(live.converse.requests) == 1


async def test_degraded_widget_streams_through_mock_data(live: Live) -> None:
    await live.question_widget("obs-stream-degraded", "Which channel costs most?")
    live.converse.script(Text())
    r = await live.client.post(DATA.format(widget_id="obs-stream-degraded") + "/stream")
    events = parse_sse(r.text)
    assert [d.get("node") for e, d in events if e == "node"] == [
        "route",
        "cache_lookup",
        "sql_generate",
        "mock_data",
        "degrade_or_return",
    ]
    assert events[3][1]["outcome"] == "mock"
    kind, body = events[-1]
    assert kind == "result" and body["live_data_unavailable"] is True
    assert body["source"] == "llm_invalid_output" and body["data"] == [
        {"model": "mock", "claims": 1}
    ]


async def test_stream_of_an_unknown_widget_is_a_404_problem(live: Live) -> None:
    r = await live.client.post(DATA.format(widget_id="no-such") + "/stream")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"


async def test_a_disconnecting_client_stops_its_stream_not_the_shared_resolution(
    live: Live,
) -> None:
    await live.question_widget("obs-leaver", "Claims per model last month?")
    live.converse.script(Slow(2.0, ToolCall()))
    path = DATA.format(widget_id="obs-leaver")
    before = await live.metrics()
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as leaver:
        async with leaver.stream("POST", path + "/stream") as resp:
            seen = []
            async for line in resp.aiter_lines():
                if line.startswith("data:"):
                    seen.append(json.loads(line[5:]))
                if len(seen) == 2:  # route and cache_lookup; sql_generate is waiting on the LLM
                    break
        # the leaver has hung up mid-resolution; another viewer shares the same run
        assert [e["node"] for e in seen] == ["route", "cache_lookup"]
    body = (await live.client.post(path)).json()
    assert body["source"] == "databricks" and body["live_data_unavailable"] is False
    assert len(live.converse.requests) == 1  # one model call for both viewers
    after = await live.metrics()
    assert (
        sample(after, "wdr_singleflight_followers_total")
        - sample(before, "wdr_singleflight_followers_total")
        == 1
    )
    # and the run the leaver started finished and cached its answer
    again = (await live.client.post(path)).json()
    assert again["cache_hit"] is True and again["resolved_at"] == body["resolved_at"]


async def test_a_lone_leaver_still_caches_the_answer(live: Live) -> None:
    await live.question_widget("obs-lone-leaver", "Devices by manufacturer?")
    live.converse.script(Slow(0.5, ToolCall()))
    path = DATA.format(widget_id="obs-lone-leaver")
    async with (
        httpx.AsyncClient(base_url=live.url, timeout=30) as leaver,
        leaver.stream("POST", path + "/stream") as resp,
    ):
        async for line in resp.aiter_lines():
            if line.startswith("data:"):
                break
    for _ in range(100):  # the abandoned run completes on its own
        if not live.app.state.resolver.flights.inflight:
            break
        await asyncio.sleep(0.05)
    body = (await live.client.post(path)).json()
    assert body["cache_hit"] is True and body["source"] == "databricks"
    assert len(live.converse.requests) == 1
