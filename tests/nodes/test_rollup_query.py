"""rollup_query (with a double of the rollup store) and its routes: a compiled warehouse
miss that a rollup can answer is answered from it (source `rollup`, its age); anything else
goes on to today's path, as does a range not yet built or a store that cannot be read."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from langgraph.runtime import Runtime

from adapters.lakehouse import TABLES
from domain.access import RowAccess, TableFilter
from domain.config import load_config
from domain.failures import PostgresFailure
from domain.results import Column
from domain.rollups import Rollup, RollupAnswer, RollupQuery
from graph.builder import build_graph
from graph.routing import route_after_cache_lookup, route_after_rollup_query
from graph.runner import GraphRunner
from metricsql.rollups import validate_rollups
from nodes.rollup_query import rollup_query
from nodes.route import route
from tests.support.doubles import NOW, CountingLeases, make_ctx

CFG = load_config()
ROLLUPS, _ = validate_rollups(
    CFG.rollups,
    metrics=CFG.metrics,
    routing=CFG.routing,
    table_columns={t: [c for c, _ in cols] for t, cols in TABLES.items()},
)
BUILT_AT = NOW - 42.0


@dataclass
class FakeRollups:
    """The RollupStore port: the rollups of the demo config, answers from a list."""

    built: bool = True
    error: PostgresFailure | None = None
    queries: list[RollupQuery] = field(default_factory=list)
    rollups: dict[str, Rollup] = field(default_factory=lambda: dict(ROLLUPS))

    caught_up: list[tuple[str, str]] = field(default_factory=list)
    catch_up_ok: bool = True
    answered: set[str] = field(default_factory=set)  # as the store: last read answered

    async def catch_up(self, rollup: str, *, data_version: str, now: float) -> bool:
        self.caught_up.append((rollup, data_version))
        return self.catch_up_ok

    def for_metric(self, metric: str) -> tuple[Rollup, ...]:
        return tuple(r for r in self.rollups.values() if metric in r.definition.metrics)

    def answering(self, rollup: str) -> bool:
        return rollup in self.answered

    async def answer(self, query: RollupQuery, *, now: float) -> RollupAnswer | None:
        self.queries.append(query)
        self.answered.discard(query.rollup)
        if self.error:
            raise self.error
        if not self.built:
            return None
        self.answered.add(query.rollup)
        return RollupAnswer(
            rows=[{"channel": "app", "value": 1.5}],
            columns=[Column("channel", "string"), Column("value", "number")],
            sql=query.sql,
            rollup=query.rollup,
            built_at=BUILT_AT,
            partitions=3,
        )


async def _routed(widget: str, store: Any, access: RowAccess | None = None) -> dict[str, Any]:
    ctx = make_ctx(rollups=store)
    state: dict[str, Any] = {"widget_id": widget}
    if access is not None:
        state["access"] = access
    state |= await route(state, Runtime(context=ctx))  # type: ignore[arg-type]
    return state


async def _run(widget: str, store: Any, access: RowAccess | None = None) -> dict[str, Any]:
    state = await _routed(widget, store, access)
    ctx = make_ctx(rollups=store)
    return await rollup_query(state, Runtime(context=ctx))  # type: ignore[arg-type]


async def test_route_names_the_candidate_rollups_of_a_compiled_warehouse_metric() -> None:
    store = FakeRollups()
    assert (await _routed("avg-claim-amount-by-channel", store))["rollup_candidates"] == (
        "claim_events_daily",
    )
    assert (await _routed("top-claimed-models", store)).get("rollup_candidates") is None  # llm
    assert "rollup_candidates" not in await _routed("open-issues-kpi", None)


async def test_a_matching_rollup_answers() -> None:
    store = FakeRollups()
    out = await _run("avg-claim-amount-by-channel", store)
    used = out["rollup"]
    assert (used["name"], used["built_at"]) == ("claim_events_daily", BUILT_AT)
    # the widget's relative range starts mid-day: the rollup (relative_ranges: floor) reads
    # from that day's start, and the answer says from when
    assert used["widened_to"] % 86_400 == 0
    since = datetime.fromtimestamp(used["widened_to"], UTC).isoformat()
    assert f"bucket >= CAST('{since}' AS TIMESTAMPTZ)" in out["generated_sql"]
    assert out["rows"] == [{"channel": "app", "value": 1.5}] and out["executed"]
    assert out["trace"][0]["outcome"] == "rollup"
    assert "FROM rollup_claim_events_daily" in out["generated_sql"]


async def test_the_identitys_row_filter_is_in_the_rollups_read() -> None:
    store = FakeRollups()
    access = RowAccess(tables=(TableFilter("main.claims.claim_events", "region", ("west",)),))
    await _run("avg-claim-amount-by-channel", store, access)
    assert "region IN ('west')" in store.queries[0].sql


async def test_no_match_goes_on_to_todays_path() -> None:
    # count-distinct over 30 days, with only the rollup whose count-distinct is per day
    store = FakeRollups(rollups={"claim_events_daily": ROLLUPS["claim_events_daily"]})
    out = await _run("claims-filed-by-region", store)
    assert "rollup" not in out and out["trace"][0]["outcome"] == "no_match"
    assert store.queries == []


async def test_a_distinct_count_is_answered_from_the_rollup_keeping_its_ids() -> None:
    store = FakeRollups()
    access = RowAccess(tables=(TableFilter("main.claims.claim_events", "region", ("west",)),))
    out = await _run("claims-filed-by-region", store, access)
    assert out["rollup"]["name"] == "claim_events_claims_daily"
    assert [q.rollup for q in store.queries] == ["claim_events_claims_daily"]
    assert "COUNT(DISTINCT claim_id)" in store.queries[0].sql
    assert "region IN ('west')" in store.queries[0].sql


async def test_a_range_not_built_goes_on_to_todays_path() -> None:
    out = await _run("claims-paid-weekly", FakeRollups(built=False))
    assert "rollup" not in out and out["trace"][0]["outcome"] == "not_built"


async def test_a_store_that_cannot_be_read_goes_on_to_todays_path() -> None:
    store = FakeRollups(error=PostgresFailure("down"))
    out = await _run("claims-paid-weekly", store)
    assert "failure" not in out and out["trace"][0]["outcome"] == "store_failed"


async def test_routes_around_rollup_query() -> None:
    miss = {"backend": "databricks", "cache_hit": False}
    assert await route_after_cache_lookup(miss | {"rollup_candidates": ("r",)}) == "rollup_query"  # type: ignore[arg-type]
    assert await route_after_cache_lookup(miss) == "sql_generate"  # type: ignore[arg-type]
    assert await route_after_cache_lookup(miss | {"rollup_candidates": ()}) == "sql_generate"  # type: ignore[arg-type]
    dry = miss | {"rollup_candidates": ("r",), "dry_run": True}
    assert await route_after_cache_lookup(dry) == "sql_generate"  # type: ignore[arg-type]
    hit = miss | {"cache_hit": True, "rollup_candidates": ("r",)}
    assert await route_after_cache_lookup(hit) == "degrade_or_return"  # type: ignore[arg-type]
    used = {"rollup": {"name": "r", "built_at": 1.0}}
    assert await route_after_rollup_query(used) == "degrade_or_return"  # type: ignore[arg-type]
    assert await route_after_rollup_query({}) == "sql_generate"


async def test_the_graph_answers_from_a_rollup_and_says_so() -> None:
    store = FakeRollups()
    ctx = make_ctx(rollups=store)
    graph = build_graph().compile()
    out = await graph.ainvoke({"widget_id": "avg-claim-amount-by-channel"}, context=ctx)
    r = out["response"]
    assert [t["node"] for t in out["trace"]] == [
        "route",
        "cache_lookup",
        "rollup_query",
        "degrade_or_return",
    ]
    assert r["source"] == "rollup" and r["backend"] == "databricks"
    widened = r["rollup"].pop("range_widened_to")
    assert r["rollup"] == {
        "name": "claim_events_daily",
        "built_at": datetime.fromtimestamp(BUILT_AT, UTC).isoformat(),
        "data_age_s": 42.0,
    }
    assert widened.endswith("T00:00:00+00:00")  # from the first day's start, said
    assert ctx.warehouse.executed == []  # type: ignore[union-attr]
    # the cached answer still says where it came from
    again = await graph.ainvoke({"widget_id": "avg-claim-amount-by-channel"}, context=ctx)
    assert again["response"]["cache_hit"] and again["response"]["source"] == "rollup"
    assert again["response"]["rollup"]["name"] == "claim_events_daily"


async def test_the_graph_falls_back_to_the_warehouse_when_not_built() -> None:
    ctx = make_ctx(rollups=FakeRollups(built=False))
    out = await build_graph().compile().ainvoke({"widget_id": "claims-paid-weekly"}, context=ctx)
    assert [t["node"] for t in out["trace"]][2:4] == ["rollup_query", "sql_generate"]
    assert out["response"]["source"] == "databricks" and out["response"]["rollup"] is None
    assert len(ctx.warehouse.executed) == 1  # type: ignore[union-attr]


async def test_a_rollup_answer_takes_no_lease_once_the_rollup_answers_here() -> None:
    """A rollup read needs no single flight (one PostgreSQL read any instance may make): a
    run reads the rollup before taking the key's lease once a read of it answered here;
    one that then finds it not answering goes on under the lease as if untried."""
    store, leases = FakeRollups(), CountingLeases()
    ctx = make_ctx(rollups=store, leases=leases)
    runner = GraphRunner(ctx)
    body: dict[str, Any] = {"widget_id": "avg-claim-amount-by-channel", "refresh": True}
    rolled = [
        ("route", "databricks"),
        ("cache_lookup", "bypass_refresh"),
        ("rollup_query", "rollup"),
        ("degrade_or_return", "live"),
    ]

    async def steps() -> list[tuple[str, str]]:
        out = await runner.ainvoke(body)
        return [(t["node"], t["outcome"]) for t in out["trace"]]

    assert await steps() == rolled and len(leases.asked) == 1  # nothing read here yet
    assert await steps() == rolled and len(leases.asked) == 1  # no lease now
    compiled = await build_graph().compile().ainvoke(body, context=ctx)  # type: ignore[call-overload]
    assert [(t["node"], t["outcome"]) for t in compiled["trace"]] == rolled
    store.built = False  # a range no longer built: the warehouse, under the lease
    reads = len(store.queries)
    out = await runner.ainvoke(body)
    assert [t["node"] for t in out["trace"]][:4] == [
        "route",
        "cache_lookup",
        "rollup_query",
        "sql_generate",
    ]
    assert len(leases.asked) == 2 and out["response"]["source"] == "databricks"
    assert len(store.queries) == reads + 2  # tried without, then read under the lease
    await runner.ainvoke(body)  # not answering here now: straight under the lease
    assert len(leases.asked) == 3 and len(store.queries) == reads + 3


async def test_a_degraded_answer_never_claims_a_rollup() -> None:
    from nodes.degrade_or_return import degrade_or_return

    state = await _routed("claims-paid-weekly", FakeRollups())
    state |= {
        "rollup": {"name": "claim_events_daily", "built_at": BUILT_AT},
        "failure": {"kind": "postgres_error", "detail": "x", "node": "rollup_query"},
    }
    ctx = make_ctx(rollups=FakeRollups())
    r = (await degrade_or_return(state, Runtime(context=ctx)))["response"]  # type: ignore[arg-type]
    assert r["source"] == "postgres_error" and r["rollup"] is None


async def test_a_known_data_version_catches_the_rollup_up_and_stamps_the_answer() -> None:
    from domain.data_versions import DataVersionGate

    gate = DataVersionGate(valid_s=60.0, clock=lambda: NOW)
    gate.learn("main.claims.claim_events", 12)
    store = FakeRollups()
    state = await _routed("claims-paid-weekly", store)
    out = await rollup_query(state, Runtime(context=make_ctx(rollups=store, data_versions=gate)))  # type: ignore[arg-type]
    assert store.caught_up == [("claim_events_daily", "12")]
    assert out["data_versions"] == {"main.claims.claim_events": 12} and out["rollup"]
    # a catch-up that failed: the answer is not stamped (it lives by its TTL)
    behind = FakeRollups(catch_up_ok=False)
    out = await rollup_query(state, Runtime(context=make_ctx(rollups=behind, data_versions=gate)))  # type: ignore[arg-type]
    assert out["data_versions"] is None and out["rollup"]
    # no version known: no catch-up, no stamp
    plain = FakeRollups()
    out = await rollup_query(state, Runtime(context=make_ctx(rollups=plain)))  # type: ignore[arg-type]
    assert plain.caught_up == [] and not out.get("data_versions")
