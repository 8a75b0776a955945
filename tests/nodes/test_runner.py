"""The runner (graph/runner.py): every answer it gives is the one the compiled graph gives
for the same input (response, trace steps, freshness); a cache answer takes no lease and
calls no backend; a miss reads the entry at most twice and runs the backend inside the
key's leadership scope, which is released however the run ends."""

from __future__ import annotations

import asyncio
import inspect
import itertools
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan

from domain.access import UNRESTRICTED
from domain.freshness import Policy, failure_note, failure_note_key, make_entry
from domain.keys import result_cache_key
from graph.builder import build_graph
from graph.observe import GraphObserver
from graph.routing import NEXT
from graph.runner import LANE, GraphRunner
from graph.state import InputState
from nodes.node_timeout import TIMEOUT_KINDS
from observability import metrics as m
from tests.support.clocks import next_turn
from tests.support.doubles import NOW, CountingLeases, StubGateway, make_ctx

WIDGET = "open-issues-kpi"  # a Postgres widget of the demo config


class CountingCache:
    """The in-process cache, counting reads of each key."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.reads: list[str] = []

    async def get(self, key: str, *, latest: bool = False) -> Any:
        self.reads.append(key)
        return await self.inner.get(key, latest=latest)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def answer(
    graph_input: dict[str, Any], ctx: Any, observer: GraphObserver | None = None
) -> dict[str, Any]:
    return await GraphRunner(ctx, observer=observer).ainvoke(graph_input)


def _key_and_policy(ctx: Any) -> tuple[str, Policy]:
    spec = ctx.registry.widget(WIDGET)
    metric = ctx.registry.metric(spec.data_intent.metric_id)
    routing = ctx.registry.routing(metric.name)
    return result_cache_key(WIDGET, spec.data_intent, routing, metric, UNRESTRICTED), Policy.of(
        routing
    )


async def _seed(ctx: Any, age_s: float, *, note: str | None = None) -> None:
    key, policy = _key_and_policy(ctx)
    entry = make_entry(
        rows=[{"value": 41}],
        schema=[{"name": "value", "type": "integer"}],
        generated_sql="SELECT 41",
        truncated=False,
        resolved_at=NOW - age_s,
        policy=policy,
    )
    await ctx.cache.set(key, entry, policy.retention_s)
    if note:
        n = failure_note(kind=note, detail="it failed", now=NOW - 1, backoff_s=5)
        await ctx.cache.set(failure_note_key(key), n, policy.retention_s)


async def _graph(ctx: Any, graph_input: InputState) -> dict[str, Any]:
    graph = build_graph().compile()
    out: dict[str, Any] = await graph.ainvoke(graph_input, context=ctx)
    return out


def _same(lane: dict[str, Any], graph: dict[str, Any]) -> None:
    assert lane["response"] == graph["response"]
    assert [(t["node"], t["outcome"]) for t in lane["trace"]] == [
        (t["node"], t["outcome"]) for t in graph["trace"]
    ]
    assert lane.get("freshness") == graph.get("freshness")


@pytest.mark.parametrize(
    ("age_s", "note", "steps"),
    [
        (5, None, ["route", "cache_lookup", "degrade_or_return"]),  # fresh hit
        # past the TTL, inside stale-while-revalidate: answered stale, a refresh to start
        (70, None, ["route", "cache_lookup", "degrade_or_return"]),
        # a failure note beside an entry inside stale-if-error: the last good answer
        (70, "postgres_timeout", ["route", "cache_lookup", "mock_data", "degrade_or_return"]),
    ],
)
async def test_the_lane_answers_as_the_graph_does(
    age_s: float, note: str | None, steps: list[str]
) -> None:
    leases = CountingLeases()
    gateway = StubGateway()
    ctx = make_ctx(leases=leases, postgres=gateway)
    _, policy = _key_and_policy(ctx)
    assert (age_s < policy.ttl_s) == (age_s == 5)  # 5 s is fresh, 70 s is past the TTL
    await _seed(ctx, age_s, note=note)
    lane = await answer({"widget_id": WIDGET}, ctx)
    assert [t["node"] for t in lane["trace"]] == steps
    assert gateway.calls == [] and leases.asked == []  # read only
    _same(lane, await _graph(ctx, {"widget_id": WIDGET}))
    assert lane["response"]["data"] == [{"value": 41}]
    assert lane["response"]["freshness_seconds"] == age_s


async def test_a_route_failure_is_the_graphs_flagged_mock() -> None:
    ctx = make_ctx()
    spec = ctx.registry.widget(WIDGET)
    assert spec is not None
    broken = spec.model_copy(
        update={"data_intent": spec.data_intent.model_copy(update={"metric_id": "nope"})}
    )
    lane = await answer({"widget_id": WIDGET, "spec": broken}, ctx)
    assert lane["response"]["source"] == "invalid_intent"
    _same(lane, await _graph(ctx, {"widget_id": WIDGET, "spec": broken}))


async def test_a_miss_reads_the_entry_twice_and_leads_under_one_scope() -> None:
    leases = CountingLeases()
    ctx = make_ctx(leases=leases)
    cache = CountingCache(ctx.cache)
    ctx = make_ctx(leases=leases, cache=cache, postgres=ctx.postgres)
    key, _ = _key_and_policy(ctx)
    out = await answer({"widget_id": WIDGET}, ctx)
    steps = [(t["node"], t["outcome"]) for t in out["trace"]]
    assert steps == [
        ("route", "postgres"),
        ("cache_lookup", "miss"),
        ("postgres_query", "ok"),
        ("degrade_or_return", "live"),
    ]
    assert cache.reads.count(key) == 2  # once to decide, once after taking the lease
    assert leases.asked == [key] and not leases.held(key)  # led, and released
    entry = await ctx.cache.get(key)
    assert entry is not None and entry["rows"] == out["response"]["data"]
    # the same run in the compiled graph gives the same answer
    graph = await _graph(make_ctx(), {"widget_id": WIDGET})
    assert [(t["node"], t["outcome"]) for t in graph["trace"]] == steps
    assert graph["response"]["data"] == out["response"]["data"]


@pytest.mark.parametrize("how", ["raises", "cancelled"])
async def test_the_lead_is_released_however_the_run_ends(how: str) -> None:
    leases = CountingLeases()
    started = asyncio.Event()

    class Stuck(StubGateway):
        async def run_metric(self, *a: Any, **kw: Any) -> Any:
            started.set()
            if how == "raises":
                raise RuntimeError("boom")
            await asyncio.Event().wait()  # until cancelled

    ctx = make_ctx(leases=leases, postgres=Stuck())
    key, _ = _key_and_policy(ctx)
    run = asyncio.create_task(answer({"widget_id": WIDGET}, ctx))
    await started.wait()
    assert leases.held(key)
    if how == "cancelled":
        run.cancel()
    with pytest.raises((RuntimeError, asyncio.CancelledError)):
        await run
    assert not leases.held(key)  # released (abandoned): a follower takes over at once


def test_the_runner_merges_with_the_graphs_reducers() -> None:
    runner = GraphRunner(make_ctx())
    assert set(runner._reducers) == {"trace"}
    state: dict[str, Any] = {"trace": [{"node": "route"}], "rows": [1]}
    runner._merge(state, {"trace": [{"node": "cache_lookup"}], "rows": [2]})
    assert state == {"trace": [{"node": "route"}, {"node": "cache_lookup"}], "rows": [2]}
    # an Overwrite takes the channel's own way, as in the graph
    from langgraph.types import Overwrite

    runner._merge(state, {"trace": Overwrite([{"node": "mock_data"}])})
    assert state["trace"] == [{"node": "mock_data"}]
    fresh: dict[str, Any] = {}
    runner._merge(fresh, {"trace": [{"node": "route"}]})
    assert fresh == {"trace": [{"node": "route"}]}


async def test_the_lane_counts_its_nodes_once_through_the_observer() -> None:
    ctx = make_ctx()
    await _seed(ctx, 5)
    labels = [("route", "postgres"), ("cache_lookup", "hit"), ("degrade_or_return", "cached")]
    m.flush()
    before = [m.NODE_OUTCOMES.labels(*lv)._value.get() for lv in labels]
    hits = m.CACHE_LOOKUPS.labels("hit")._value.get()
    await answer({"widget_id": WIDGET}, ctx, GraphObserver(metrics=True))
    assert [m.NODE_OUTCOMES.labels(*lv)._value.get() for lv in labels] == before  # not yet
    await next_turn()  # the loop's next turn records them
    after = [m.NODE_OUTCOMES.labels(*lv)._value.get() for lv in labels]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1]
    assert m.CACHE_LOOKUPS.labels("hit")._value.get() == hits + 1


def test_the_lane_only_holds_read_only_nodes_and_walks_the_graphs_edges() -> None:
    graph = build_graph().compile().get_graph()
    edges = {(e.source, e.target) for e in graph.edges}
    for name, after in NEXT.items():
        if isinstance(after, str):
            assert (name, after) in edges
        else:
            assert inspect.iscoroutinefunction(after), f"{name}'s router runs in a thread"
    assert {"route", "cache_lookup", "rollup_query", "mock_data", "degrade_or_return"} == LANE
    # no node with a timeout policy (a backend query) runs outside the compiled graph
    assert not LANE & set(TIMEOUT_KINDS)


async def test_the_lanes_spans_are_the_graphs_children_of_the_request() -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from observability.tracing import setup_tracing

    exporter = InMemorySpanExporter()
    tracing = setup_tracing({}, exporter=exporter)
    assert tracing.tracer is not None
    ctx = make_ctx()
    await _seed(ctx, 70, note="postgres_timeout")  # the last good answer: four nodes
    with tracing.tracer.start_as_current_span("request"):
        await answer({"widget_id": WIDGET}, ctx, GraphObserver(tracing=tracing))
    tracing.force_flush()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    nodes = ["route", "cache_lookup", "mock_data", "degrade_or_return"]
    assert set(spans) == {"request", *nodes}
    root = spans["request"]
    for name in nodes:
        span = spans[name]
        assert span.parent is not None and root.context is not None
        assert span.parent.span_id == root.context.span_id
        assert _start(root) <= _start(span) <= _end(span) <= _end(root)
    assert all(_end(spans[a]) <= _start(spans[b]) for a, b in itertools.pairwise(nodes))
    final = spans["degrade_or_return"].attributes
    assert final is not None and final["wdr.source"] == "postgres_timeout"
    # the node that took over the failure (from the note) carries it, as in a graph run
    assert spans["cache_lookup"].status.status_code.name == "ERROR"
    tracing.shutdown()


def _start(span: ReadableSpan) -> int:
    assert span.start_time is not None, span.name
    return span.start_time


def _end(span: ReadableSpan) -> int:
    assert span.end_time is not None, span.name  # ended: the exporter has it
    return span.end_time
