"""graph/observe.py: the one node hook feeds the metric families and, when on, node spans."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from domain.failures import FailureKind, PostgresFailure
from graph.builder import build_graph
from graph.context import Context
from graph.observe import GraphObserver
from observability.metrics import flush
from observability.tracing import setup_tracing, sql_hash
from tests.support.doubles import StubGateway, StubLLM, StubWarehouse, make_ctx

OBSERVED = build_graph(observer=GraphObserver(metrics=True)).compile()


def value(name: str, **labels: str) -> float:
    flush()  # what the last run's nodes recorded for the loop's next turn
    return REGISTRY.get_sample_value(name, labels) or 0.0


def node_counts() -> dict[str, float]:
    names = (
        "route",
        "cache_lookup",
        "postgres_query",
        "sql_generate",
        "safety_check",
        "databricks_execute",
        "mock_data",
        "degrade_or_return",
    )
    return {n: value("wdr_node_duration_seconds_count", node=n) for n in names}


async def run(graph: Any, c: Context, widget_id: str, **flags: bool) -> dict[str, Any]:
    out: dict[str, Any] = await graph.ainvoke({"widget_id": widget_id, **flags}, context=c)
    return out


async def test_counters_move_by_exactly_the_resolutions_and_nodes_that_ran() -> None:
    gateway = StubGateway()
    c = make_ctx(postgres=gateway)
    res = "wdr_resolutions_total"
    before = {
        "live": value(res, backend="postgres", source="postgres", outcome="live"),
        "cached": value(res, backend="postgres", source="postgres", outcome="cached"),
        "stale": value(res, backend="postgres", source="postgres_timeout", outcome="stale"),
        "hit": value("wdr_cache_lookups_total", result="hit"),
        "miss": value("wdr_cache_lookups_total", result="miss"),
        "pg": value("wdr_backend_statement_duration_seconds_count", backend="postgres"),
        "pg_err": value(
            "wdr_backend_statement_errors_total", backend="postgres", kind="postgres_timeout"
        ),
    }
    nodes_before = node_counts()
    ran: list[str] = []
    for flags in ({}, {}, {"refresh": True}):
        out = await run(OBSERVED, c, "open-issues-kpi", **flags)
        ran += [t["node"] for t in out["trace"]]
    gateway.error = PostgresFailure("statement timeout", kind=FailureKind.postgres_timeout)
    out = await run(OBSERVED, c, "open-issues-kpi", refresh=True)
    assert out["response"]["source"] == "postgres_timeout"
    ran += [t["node"] for t in out["trace"]]

    assert value(res, backend="postgres", source="postgres", outcome="live") - before["live"] == 2
    assert (
        value(res, backend="postgres", source="postgres", outcome="cached") - before["cached"] == 1
    )
    # the failed refresh answered the last good entry (issue 11), counted as a stale answer
    assert out["response"]["stale"] is True
    assert (
        value(res, backend="postgres", source="postgres_timeout", outcome="stale") - before["stale"]
        == 1
    )
    assert value("wdr_cache_lookups_total", result="hit") - before["hit"] == 1
    assert value("wdr_cache_lookups_total", result="miss") - before["miss"] == 1  # refresh skips
    assert (
        value("wdr_backend_statement_duration_seconds_count", backend="postgres") - before["pg"]
        == 3
    )
    assert (
        value("wdr_backend_statement_errors_total", backend="postgres", kind="postgres_timeout")
        - before["pg_err"]
        == 1
    )
    after = node_counts()
    for node, count in after.items():
        assert count - nodes_before[node] == ran.count(node), node


async def test_llm_and_safety_families() -> None:
    llm_ok = value("wdr_llm_requests_total", outcome="ok")
    tokens_in = value("wdr_llm_tokens_total", direction="input")
    tokens_out = value("wdr_llm_tokens_total", direction="output")
    rejected = value("wdr_safety_rejections_total", rule="read_only")
    wh = StubWarehouse()
    c = make_ctx(llm=StubLLM(), warehouse=wh)
    spec = c.registry.widget("claims-filed-by-region")
    assert spec is not None
    question = spec.model_copy(
        update={
            "data_intent": spec.data_intent.model_copy(update={"question": "claims by region?"})
        }
    )
    out = await OBSERVED.ainvoke({"widget_id": "q1", "spec": question}, context=c)
    assert out["response"]["source"] == "databricks"
    assert value("wdr_llm_requests_total", outcome="ok") - llm_ok == 1
    # the grounding turn's tokens (7 in, 3 out: no metric fitted) and the SQL turn's (10, 5)
    assert value("wdr_llm_tokens_total", direction="input") - tokens_in == 17
    assert value("wdr_llm_tokens_total", direction="output") - tokens_out == 8
    assert value("wdr_backend_statement_duration_seconds_count", backend="duckdb") >= 1

    bad = make_ctx(llm=StubLLM(sql="DELETE FROM main.claims.devices"), warehouse=wh)
    out = await OBSERVED.ainvoke({"widget_id": "q2", "spec": question}, context=bad)
    assert out["response"]["source"] == "safety_violation"
    assert value("wdr_safety_rejections_total", rule="read_only") - rejected == 1


def attributes(span: ReadableSpan) -> Mapping[str, Any]:
    """A finished span's attributes (every span the observer ends has some)."""
    assert span.attributes is not None, span.name
    return span.attributes


async def test_node_spans_carry_the_resolution_attributes() -> None:
    exporter = InMemorySpanExporter()
    tracing = setup_tracing({}, exporter=exporter)
    graph = build_graph(observer=GraphObserver(tracing=tracing)).compile()
    c = make_ctx()
    assert tracing.tracer is not None
    with tracing.tracer.start_as_current_span("request"):
        out = await run(graph, c, "open-issues-kpi", refresh=True)
    tracing.force_flush()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"request", "route", "cache_lookup", "postgres_query", "degrade_or_return"}
    root = spans["request"]
    for name in ("route", "cache_lookup", "postgres_query", "degrade_or_return"):
        parent = spans[name].parent
        assert parent is not None and root.context is not None
        assert parent.span_id == root.context.span_id
        assert spans[name].context.trace_id == root.context.trace_id
        assert attributes(spans[name])["wdr.widget_id"] == "open-issues-kpi"
    pg = attributes(spans["postgres_query"])
    assert pg["wdr.sql_hash"] == sql_hash(out["response"]["generated_sql"])
    assert "db.query.text" not in pg and pg["db.system"] == "postgresql"
    final = attributes(spans["degrade_or_return"])
    assert final["wdr.source"] == "postgres" and final["wdr.row_count"] == 1
    assert final["wdr.cache_hit"] is False and final["wdr.metric_id"] == "active_issues_count"
    tracing.shutdown()


def test_freshness_outcomes_map_to_stale_and_lease_followers() -> None:
    """The outcome names the freshness work reports (stale answers, lease followers)."""
    from graph.observe import record_metrics

    c = make_ctx()
    state: Any = {"widget_id": "w", "backend": "postgres"}

    def entry(node: str, outcome: str) -> dict[str, Any]:
        return {"trace": [{"node": node, "ms": 0.2, "outcome": outcome}]}

    before = {
        "stale": value("wdr_cache_lookups_total", result="stale"),
        "hit": value("wdr_cache_lookups_total", result="hit"),
        "served": value("wdr_lease_followers_total", result="served"),
        "failure": value("wdr_lease_followers_total", result="failure"),
        "res": value(
            "wdr_resolutions_total", backend="postgres", source="postgres", outcome="stale"
        ),
    }
    record_metrics("cache_lookup", state, entry("cache_lookup", "stale"), c)
    record_metrics("cache_lookup", state, entry("cache_lookup", "shared"), c)
    record_metrics("cache_lookup", state, entry("cache_lookup", "shared_failure"), c)
    record_metrics("cache_lookup", state, entry("cache_lookup", "bypass_refresh"), c)
    stale_answer = entry("degrade_or_return", "cached") | {
        "response": {"backend": "postgres", "source": "postgres", "stale": True}
    }
    record_metrics("degrade_or_return", state, stale_answer, c)
    assert value("wdr_cache_lookups_total", result="stale") - before["stale"] == 1
    assert value("wdr_cache_lookups_total", result="hit") - before["hit"] == 1
    assert value("wdr_lease_followers_total", result="served") - before["served"] == 1
    assert value("wdr_lease_followers_total", result="failure") - before["failure"] == 1
    assert (
        value("wdr_resolutions_total", backend="postgres", source="postgres", outcome="stale")
        - before["res"]
        == 1
    )
