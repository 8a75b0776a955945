"""The nodes with data versions (domain/data_versions.py), with doubles: a backend node
stamps its answer before the query, degrade_or_return keeps the stamp in the entry and the
freshness hint, and cache_lookup judges entries by their stamp before their TTL."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from adapters.lease import LocalLeases
from domain.data_versions import DataVersionGate, postgres_source
from domain.freshness import Policy, make_entry
from domain.models import RoutingEntry
from graph.state import State
from nodes.cache_lookup import cache_lookup, needs_lease, probe
from nodes.degrade_or_return import degrade_or_return
from nodes.postgres_query import postgres_query
from tests.support.doubles import NOW, DictRegistry, as_state, make_ctx

ROUTING = RoutingEntry(
    backend="postgres", ttl_seconds=10, stale_while_revalidate_seconds=10, stale_if_error_seconds=60
)
POLICY = Policy.of(ROUTING)
SOURCE = postgres_source("active_issues_count")


def gate(version: int = 1) -> DataVersionGate:
    g = DataVersionGate(valid_s=30, clock=lambda: NOW)
    g.learn(SOURCE, version)
    return g


def entry(age_s: float, versions: dict[str, int] | None) -> dict[str, Any]:
    e = make_entry(
        rows=[{"v": 1}],
        schema=[],
        generated_sql="SELECT 1",
        truncated=False,
        resolved_at=NOW - age_s,
        policy=POLICY,
    )
    return e | ({"versions": versions} if versions else {})


def state(**kw: Any) -> State:
    registry = DictRegistry.demo()
    base = {
        "widget_id": "open-issues-kpi",
        "spec": registry.widget("open-issues-kpi"),
        "metric": registry.metric("active_issues_count"),
        "cache_key": "k",
        "routing": ROUTING,
        "backend": "postgres",
        "generator": "compiled",
    }
    return as_state(base, kw)


async def test_postgres_query_stamps_the_versions_known_before_it_runs() -> None:
    out = await postgres_query(state(), Runtime(context=make_ctx(data_versions=gate(3))))
    assert out["data_versions"] == {SOURCE: 3}
    never = DataVersionGate(valid_s=30, clock=lambda: NOW)
    out = await postgres_query(state(), Runtime(context=make_ctx(data_versions=never)))
    assert out["data_versions"] is None  # never probed: the TTL rules this answer
    out = await postgres_query(state(), Runtime(context=make_ctx()))
    assert out["data_versions"] is None


async def test_a_live_answer_keeps_its_stamp_in_the_entry_and_the_hint() -> None:
    ctx = make_ctx(data_versions=gate())
    live = state(rows=[{"v": 2}], executed=True, resolved_at=NOW, data_versions={SOURCE: 1})
    out = await degrade_or_return(live, Runtime(context=ctx))
    assert out["freshness"].versions == {SOURCE: 1}
    assert (await ctx.cache.get("k"))["versions"] == {SOURCE: 1}  # type: ignore[index]


async def test_an_unchanged_version_keeps_an_old_entry_fresh() -> None:
    ctx = make_ctx(data_versions=gate(), leases=LocalLeases())
    await ctx.cache.set("k", entry(60, {SOURCE: 1}), 3600)  # past its TTL and both windows
    read = await probe(state(), ctx)  # type: ignore[arg-type]
    assert not needs_lease(state(), ctx, read)  # type: ignore[arg-type]
    for given in ({}, {"probe": read}):  # bare, and on the runner's read
        out = await cache_lookup(state(**given), Runtime(context=ctx))
        assert out["cache_hit"] and out["trace"][0]["outcome"] == "hit", out
        assert not out.get("stale") and out["data_versions"] == {SOURCE: 1}
    background = await cache_lookup(state(background=True, ahead_s=1e6), Runtime(context=ctx))
    assert background["skipped"] and background["trace"][0]["outcome"] == "skip_fresh"


async def test_a_moved_version_makes_a_young_entry_stale_and_refreshes_it() -> None:
    ctx = make_ctx(data_versions=gate(2), leases=LocalLeases())
    await ctx.cache.set("k", entry(1, {SOURCE: 1}), 3600)  # fresh by its TTL
    out = await cache_lookup(state(), Runtime(context=ctx))
    assert out["cache_hit"] and out["stale"] and out["revalidate"]
    bg = state(background=True, ahead_s=0)
    assert needs_lease(bg, ctx, await probe(bg, ctx))  # type: ignore[arg-type]
    async with ctx.leases.lead("k", wait_s=0, follow=False) as lead:  # type: ignore[union-attr]
        background = await cache_lookup(as_state(bg, {"lead": lead}), Runtime(context=ctx))
    assert background["trace"][0]["outcome"] == "refresh"


async def test_an_unstamped_entry_lives_by_its_ttl() -> None:
    ctx = make_ctx(data_versions=gate(), leases=LocalLeases())
    await ctx.cache.set("k", entry(15, None), 3600)
    out = await cache_lookup(state(), Runtime(context=ctx))
    assert out["stale"] and out["stale_reason"] == "revalidating"
