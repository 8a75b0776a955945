"""cache_lookup, mock_data and degrade_or_return on the freshness paths, with doubles
(the in-process cache and leases); over the real servers in tests/integration/test_freshness.py."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from langgraph.runtime import Runtime

from adapters.lease import LocalLeases
from domain.freshness import Policy, failure_note, failure_note_key, make_entry
from domain.lease import Outcome
from domain.models import RoutingEntry
from graph.state import State
from nodes.cache_lookup import cache_lookup, needs_lease, probe
from nodes.databricks_execute import query_tags
from nodes.degrade_or_return import degrade_or_return
from nodes.mock_data import mock_data
from tests.support.clocks import until
from tests.support.doubles import NOW, as_state, make_ctx

ROUTING = RoutingEntry(
    backend="postgres", ttl_seconds=10, stale_while_revalidate_seconds=10, stale_if_error_seconds=60
)
POLICY = Policy.of(ROUTING)


def _entry(age_s: float, rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return make_entry(
        rows=rows or [{"v": 1}],
        schema=[{"name": "v", "type": "integer"}],
        generated_sql="SELECT 1",
        truncated=False,
        resolved_at=NOW - age_s,
        policy=POLICY,
    )


def _state(**kw: Any) -> State:
    from tests.support.doubles import DictRegistry

    spec = DictRegistry.demo().widget("open-issues-kpi")
    base = {
        "widget_id": "open-issues-kpi",
        "spec": spec,
        "cache_key": "k",
        "routing": ROUTING,
        "backend": "postgres",
    }
    return as_state(base, kw)


async def _lookup(ctx: Any, **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = await cache_lookup(_state(**kw), Runtime(context=ctx))
    return out


async def _led(ctx: Any, *, follow: bool = True, **kw: Any) -> dict[str, Any]:
    """cache_lookup inside the key's leadership scope, on the read taken before it, as the
    runner runs it."""
    read = await probe(_state(**kw), ctx)  # type: ignore[arg-type]
    async with ctx.leases.lead("k", wait_s=5, follow=follow) as lead:
        return await _lookup(ctx, lead=lead, probe=read, **kw)


async def test_fresh_stale_and_expired_entries() -> None:
    ctx = make_ctx(leases=LocalLeases())
    await ctx.cache.set("k", _entry(5), POLICY.retention_s)
    fresh = await _lookup(ctx)
    assert fresh["cache_hit"] and not fresh.get("stale") and not fresh.get("revalidate")
    await ctx.cache.set("k", _entry(15), POLICY.retention_s)
    stale = await _lookup(ctx)
    assert stale["cache_hit"] and stale["stale"] and stale["stale_reason"] == "revalidating"
    assert stale["revalidate"] and stale["trace"][0]["outcome"] == "stale"
    await ctx.cache.set("k", _entry(30), POLICY.retention_s)  # past SWR, inside SIE
    old = await _led(ctx)
    assert old["cache_hit"] is False and old["last_good"]["rows"] == [{"v": 1}]
    assert old["trace"][0]["outcome"] == "miss"
    await ctx.cache.set("k", _entry(80), POLICY.retention_s)  # past both windows
    gone = await _led(ctx)
    assert gone["cache_hit"] is False and gone["last_good"] is None


async def test_a_recent_failure_answers_the_last_good_at_once() -> None:
    ctx = make_ctx(leases=LocalLeases())
    await ctx.cache.set("k", _entry(30), POLICY.retention_s)
    note = failure_note(kind="postgres_timeout", detail="slow", now=NOW - 1, backoff_s=5)
    await ctx.cache.set(failure_note_key("k"), note, 60)
    out = await _lookup(ctx)
    assert out["failure"]["kind"] == "postgres_timeout" and out["last_good"] is not None
    assert out["revalidate"] is False  # the backoff runs: no retry yet
    assert not needs_lease(_state(), ctx, await probe(_state(), ctx))  # nobody queries
    note["retry_at"] = NOW - 0.1
    await ctx.cache.set(failure_note_key("k"), note, 60)
    assert (await _lookup(ctx))["revalidate"] is True  # backoff over: a background retry


async def test_followers_share_the_leaders_answer_or_failure() -> None:
    leases = LocalLeases()
    ctx = make_ctx(leases=leases)
    async with leases.lead("k", wait_s=5) as leader:
        assert leader.leads and leader.held
        follower = asyncio.create_task(_led(ctx))
        await until(lambda: leases.waiting("k") == 1)
        await ctx.cache.set("k", _entry(0, rows=[{"v": 2}]), POLICY.retention_s)
        leader.settle(Outcome(ok=True))
    shared = await follower
    assert shared["shared"] and shared["rows"] == [{"v": 2}] and shared["cache_hit"] is False
    async with leases.lead("k", wait_s=5) as leader:
        follower = asyncio.create_task(_led(ctx, refresh=True))
        await until(lambda: leases.waiting("k") == 1)
        leader.settle(Outcome(ok=False, kind="postgres_error", detail="boom"))
    failed = await follower
    assert failed["failure"] == {"kind": "postgres_error", "detail": "boom", "node": "cache_lookup"}
    assert failed["trace"][0]["outcome"] == "shared_failure"  # a follower writes no note


async def test_background_refresh_skips_when_not_needed_busy_or_backing_off() -> None:
    leases = LocalLeases()
    ctx = make_ctx(leases=leases)
    await ctx.cache.set("k", _entry(5), POLICY.retention_s)  # 5 s of TTL left
    assert (await _lookup(ctx, background=True, ahead_s=1.0))["skipped"]
    async with leases.lead("k", wait_s=0, follow=False) as leader:
        lead = await _lookup(ctx, background=True, ahead_s=6.0, lead=leader)  # ahead window
        assert lead["trace"][0]["outcome"] == "refresh"
        busy = await _led(ctx, follow=False, background=True, ahead_s=6.0)  # the lease is held
        assert busy["skipped"] and busy["trace"][0]["outcome"] == "skip_busy"
    assert leases.held("k") is False  # released when the scope ended
    note = failure_note(kind="postgres_error", detail="d", now=NOW, backoff_s=5)
    await ctx.cache.set(failure_note_key("k"), note, 60)
    backoff = await _lookup(ctx, background=True, ahead_s=6.0)
    assert backoff["trace"][0]["outcome"] == "skip_backoff"


async def test_mock_data_prefers_a_last_good_answer_inside_its_window() -> None:
    ctx = make_ctx()
    failure = {"kind": "postgres_error", "detail": "d", "node": "postgres_query"}
    good = await mock_data(_state(failure=failure, last_good=_entry(30)), Runtime(context=ctx))
    assert good["fallback"] == "last_good" and good["rows"] == [{"v": 1}]
    assert good["resolved_at"] == NOW - 30
    too_old = await mock_data(_state(failure=failure, last_good=_entry(71)), Runtime(context=ctx))
    assert too_old["fallback"] == "mock" and too_old["rows"] == [{"value": 42}]
    none = await mock_data(_state(failure=failure), Runtime(context=ctx))
    assert none["fallback"] == "mock"


async def test_degrade_or_return_last_good_never_overwrites_and_notes_the_failure() -> None:
    leases = LocalLeases()
    ctx = make_ctx(leases=leases)
    entry = _entry(30)
    await ctx.cache.set("k", entry, POLICY.retention_s)
    failure = {"kind": "postgres_error", "detail": "d", "node": "postgres_query"}
    state = _state(failure=failure, last_good=entry)
    state = as_state(state, await mock_data(state, Runtime(context=ctx)))
    out = await degrade_or_return(state, Runtime(context=ctx))
    r = out["response"]
    assert r["stale"] and r["stale_reason"] == "postgres_error" and r["live_data_unavailable"]
    assert r["data"] == [{"v": 1}] and r["freshness_seconds"] == 30 and r["cache_hit"]
    assert await ctx.cache.get("k") == entry  # untouched
    note = await ctx.cache.get(failure_note_key("k"))
    assert note is not None and note["kind"] == "postgres_error"
    assert not leases.held("k")  # the node takes no lease (the runner's scope holds it)


async def test_a_failure_is_logged_as_a_warning_once_not_per_viewer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The run that met the failure warns; answers that only took it over (the failure note,
    a lease leader's failure) log at DEBUG: an outage is not one WARNING per viewer."""
    ctx = make_ctx()
    caplog.set_level(logging.DEBUG, logger="nodes.degrade_or_return")
    for node, level in (("postgres_query", logging.WARNING), ("cache_lookup", logging.DEBUG)):
        caplog.clear()
        failure = {"kind": "postgres_error", "detail": "d", "node": node}
        state = _state(failure=failure, last_good=_entry(30))
        state = as_state(state, await mock_data(state, Runtime(context=ctx)))
        await degrade_or_return(state, Runtime(context=ctx))
        [record] = [r for r in caplog.records if "last good entry" in r.getMessage()]
        assert record.levelno == level, node


async def test_degrade_or_return_writes_the_windows_and_clears_the_note() -> None:
    ctx = make_ctx()
    await ctx.cache.set(failure_note_key("k"), {"kind": "x", "detail": "", "retry_at": 0}, 60)
    state = _state(rows=[{"v": 3}], schema=[], executed=True, resolved_at=NOW)
    out = await degrade_or_return(state, Runtime(context=ctx))
    assert out["response"]["stale"] is False and out["response"]["stale_reason"] is None
    written = await ctx.cache.get("k")
    assert written is not None and (written["ttl_s"], written["swr_s"], written["sie_s"]) == (
        10,
        10,
        60,
    )
    assert await ctx.cache.get(failure_note_key("k")) is None
    assert out["freshness"].expires_at == NOW + 10 and out["freshness"].live


def test_query_tags_name_widget_metric_and_tenant() -> None:
    from domain.access import RowAccess
    from tests.support.doubles import DictRegistry

    metric = DictRegistry.demo().metric("claims_filed_count")
    tags = query_tags(
        {"widget_id": "w", "metric": metric, "access": RowAccess(tenant="acme")}  # type: ignore[typeddict-item]
    )
    assert tags == {
        "app": "widget-data-resolver",
        "widget": "w",
        "metric": "claims_filed_count",
        "tenant": "acme",
        "run": "live",
    }
    background = query_tags({"widget_id": "w", "background": True})  # type: ignore[typeddict-item]
    assert background["run"] == "background"
