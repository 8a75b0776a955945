"""Unit tests: each node alone, called with a Runtime holding test doubles."""

from __future__ import annotations

import pytest
from langgraph.runtime import Runtime

from domain.failures import FailureKind, PostgresFailure, WarehouseFailure
from domain.models import DataIntent, RoutingEntry
from graph.context import Context
from graph.state import State
from nodes.cache_lookup import cache_lookup
from nodes.databricks_execute import databricks_execute
from nodes.degrade_or_return import degrade_or_return
from nodes.mock_data import mock_data
from nodes.postgres_query import postgres_query
from nodes.route import InvalidInput, WidgetNotFound, route
from nodes.safety_check import safety_check
from nodes.sql_generate import sql_generate
from service.schemas import ResolveResponse
from tests.support.doubles import (
    NOW,
    DictRegistry,
    ListLog,
    StubGateway,
    StubLLM,
    StubWarehouse,
    as_state,
    make_ctx,
)
from tests.support.servers import RESPONSE_FIELDS


async def run_route(ctx: Context, widget_id: str) -> dict:
    return await route({"widget_id": widget_id}, Runtime(context=ctx))


# ------------------------------------------------------------------ route


async def test_route_postgres_widget() -> None:
    out = await run_route(make_ctx(), "open-issues-kpi")
    assert out["backend"] == "postgres" and out["generator"] == "compiled"
    assert out["cache_key"].startswith("r2:default:open-issues-kpi:")
    assert out["trace"] == [{"node": "route", "ms": out["trace"][0]["ms"], "outcome": "postgres"}]
    assert "failure" not in out


async def test_route_question_widget_uses_llm_generator() -> None:
    out = await run_route(make_ctx(), "top-claimed-models")
    assert out["backend"] == "databricks" and out["generator"] == "llm"


async def test_route_unknown_widget_raises() -> None:
    with pytest.raises(WidgetNotFound):
        await run_route(make_ctx(), "nope")


async def test_route_takes_an_inline_intent_for_the_widget() -> None:
    """Studio's optional `intent`: the registered widget, resolved with another intent."""
    intent = DataIntent(metric_id="active_issues_count", dimensions=["severity"])
    given = {"widget_id": "open-issues-kpi", "intent": intent}
    out = await route(given, Runtime(context=make_ctx()))  # type: ignore[arg-type]
    assert out["spec"].data_intent == intent and out["spec"].title == "Open issues"
    plain = await run_route(make_ctx(), "open-issues-kpi")
    assert out["cache_key"] != plain["cache_key"]  # its own answer, not the widget's
    # as JSON (Studio's input), validated as the API validates it
    as_json = {"widget_id": "open-issues-kpi", "intent": intent.model_dump(mode="json")}
    out = await route(as_json, Runtime(context=make_ctx()))  # type: ignore[arg-type]
    assert out["spec"].data_intent == intent and out["cache_key"] != plain["cache_key"]
    bad = {"widget_id": "open-issues-kpi", "intent": {"metric_id": "x", "grain": "fortnight"}}
    with pytest.raises(InvalidInput, match=r"the input's `intent` is not valid: grain"):
        await route(bad, Runtime(context=make_ctx()))  # type: ignore[arg-type]


async def test_route_bad_input_says_what_is_wrong() -> None:
    """Studio shows a ValueError's message (and hides others'): each says what to send."""
    with pytest.raises(ValueError, match=r"unknown widget 'nope' .*GET /v1/widgets"):
        await run_route(make_ctx(), "nope")
    # an inline spec needs no registered id (the service's SQL generation passes None)
    spec = DictRegistry.demo().widget("open-issues-kpi")
    assert spec is not None
    out = await route({"widget_id": None, "spec": spec}, Runtime(context=make_ctx()))  # type: ignore[typeddict-item]
    assert out["backend"] == "postgres"
    out = await route({"spec": spec}, Runtime(context=make_ctx()))
    assert out["backend"] == "postgres"
    for given in ({}, {"refresh": True}, {"widget_id": ""}):
        with pytest.raises(InvalidInput, match=r"the input needs `widget_id`.*open-issues-kpi"):
            await route(given, Runtime(context=make_ctx()))  # type: ignore[arg-type]


async def test_route_missing_routing_entry_fails_routing_missing() -> None:
    reg = DictRegistry.demo()
    del reg.routing_["active_issues_count"]
    out = await run_route(make_ctx(registry=reg), "open-issues-kpi")
    assert out["failure"]["kind"] == "routing_missing"


async def test_route_stale_spec_with_bad_dimension_is_invalid_intent() -> None:
    reg = DictRegistry.demo()
    spec = reg.widgets_["issues-by-severity"]
    bad = spec.model_copy(
        update={"data_intent": spec.data_intent.model_copy(update={"dimensions": ["salary"]})}
    )
    reg.widgets_["stale"] = bad
    out = await run_route(make_ctx(registry=reg), "stale")
    assert out["failure"]["kind"] == "invalid_intent"
    assert "salary" in out["failure"]["detail"]


async def test_route_cache_key_changes_with_routing() -> None:
    reg = DictRegistry.demo()
    k1 = (await run_route(make_ctx(registry=reg), "open-issues-kpi"))["cache_key"]
    reg.routing_["active_issues_count"] = RoutingEntry(backend="postgres", ttl_seconds=5)
    k2 = (await run_route(make_ctx(registry=reg), "open-issues-kpi"))["cache_key"]
    assert k1 != k2


# ------------------------------------------------------------------ cache_lookup


async def test_cache_lookup_hit_and_miss_and_bypass() -> None:
    ctx = make_ctx()
    state: State = {"cache_key": "k1", "routing": RoutingEntry(backend="postgres", ttl_seconds=60)}
    miss = await cache_lookup(state, Runtime(context=ctx))
    assert miss["cache_hit"] is False and miss["trace"][0]["outcome"] == "miss"
    await ctx.cache.set(
        "k1", {"rows": [{"v": 1}], "schema": [], "generated_sql": "S", "resolved_at": NOW - 5}, 60
    )
    hit = await cache_lookup(state, Runtime(context=ctx))
    assert hit["cache_hit"] is True and hit["rows"] == [{"v": 1}] and hit["resolved_at"] == NOW - 5
    assert not hit.get("stale")
    refresh = await cache_lookup(as_state(state, {"refresh": True}), Runtime(context=ctx))
    assert refresh["cache_hit"] is False and refresh["trace"][0]["outcome"] == "bypass_refresh"
    assert refresh["last_good"]["rows"] == [{"v": 1}]  # may stand in if the refresh fails
    dry = await cache_lookup(as_state(state, {"dry_run": True}), Runtime(context=ctx))
    assert dry["cache_hit"] is False


# ------------------------------------------------------------------ postgres_query


async def _pg_state(ctx: Context) -> State:
    return as_state({"widget_id": "open-issues-kpi"}, await run_route(ctx, "open-issues-kpi"))


async def test_postgres_query_ok() -> None:
    ctx = make_ctx()
    out = await postgres_query(await _pg_state(ctx), Runtime(context=ctx))
    assert out["rows"] == [{"value": 7}] and out["executed"] is True and out["resolved_at"] == NOW
    assert "kpi_metrics_history" in out["generated_sql"]


@pytest.mark.parametrize(
    "gateway, kind",
    [
        (StubGateway(mapped=False), "postgres_unmapped"),
        (
            StubGateway(error=PostgresFailure("down", kind=FailureKind.postgres_unavailable)),
            "postgres_unavailable",
        ),
        (
            StubGateway(error=PostgresFailure("slow", kind=FailureKind.postgres_timeout)),
            "postgres_timeout",
        ),
        (StubGateway(error=PostgresFailure("bad")), "postgres_error"),
        (None, "postgres_unavailable"),
    ],
)
async def test_postgres_query_failures(gateway: StubGateway | None, kind: str) -> None:
    ctx = make_ctx(postgres=gateway)
    out = await postgres_query(await _pg_state(ctx), Runtime(context=ctx))
    assert out["failure"]["kind"] == kind


async def test_postgres_query_dry_run_runs_nothing() -> None:
    gw = StubGateway()
    ctx = make_ctx(postgres=gw)
    out = await postgres_query(
        as_state(await _pg_state(ctx), {"dry_run": True}), Runtime(context=ctx)
    )
    assert out["executed"] is False and out["generated_sql"] and gw.calls == []


# ------------------------------------------------------------------ sql_generate / safety_check


async def _wh_state(ctx: Context, widget_id: str = "claims-filed-by-region") -> State:
    return as_state({"widget_id": widget_id}, await run_route(ctx, widget_id))


async def test_sql_generate_compiled() -> None:
    ctx = make_ctx()
    out = await sql_generate(await _wh_state(ctx), Runtime(context=ctx))
    assert "main.claims.claim_events" in out["candidate_sql"].lower()
    assert out["trace"][0]["outcome"] == "compiled"


async def test_sql_generate_llm_unconfigured_fails_loud() -> None:
    ctx = make_ctx(llm=None)
    out = await sql_generate(await _wh_state(ctx, "top-claimed-models"), Runtime(context=ctx))
    assert out["failure"]["kind"] == "bedrock_unconfigured"
    assert out["generation"]["failure_kind"] == "bedrock_unconfigured"


async def test_sql_generate_llm_sends_schema_and_reuses_approved_sql() -> None:
    llm = StubLLM()
    ctx = make_ctx(llm=llm)
    state = await _wh_state(ctx, "top-claimed-models")
    out = await sql_generate(state, Runtime(context=ctx))
    assert out["candidate_sql"] == llm.sql and out["generation"]["reused"] is False
    assert llm.requests[0].question.startswith("Which 5 device models")
    checked = await safety_check(as_state(state, out), Runtime(context=ctx))
    assert checked["safety"]["allowed"] is True
    again = await sql_generate(state, Runtime(context=ctx))
    assert again["generation"]["reused"] is True and len(llm.requests) == 1


async def test_sql_generate_llm_failure_kind_recorded() -> None:
    from domain.failures import GenerationFailure

    llm = StubLLM(
        error=GenerationFailure("ExpiredTokenException: gone", kind=FailureKind.bedrock_unavailable)
    )
    ctx = make_ctx(llm=llm)
    out = await sql_generate(await _wh_state(ctx, "top-claimed-models"), Runtime(context=ctx))
    assert (
        out["failure"]["kind"] == "bedrock_unavailable"
        and "ExpiredToken" in out["failure"]["detail"]
    )


async def test_safety_check_rejects_and_rerenders() -> None:
    ctx = make_ctx()
    bad = await safety_check(
        {"candidate_sql": "SELECT 1; DROP TABLE main.claims.devices"}, Runtime(context=ctx)
    )
    assert bad["failure"]["kind"] == "safety_violation" and bad["safety"]["allowed"] is False
    assert bad["safety"]["rule"] == "single_statement"
    assert bad["failure"]["detail"].startswith("single_statement: ")
    ok = await safety_check(
        {"candidate_sql": "select region from main.claims.claim_events"}, Runtime(context=ctx)
    )
    assert ok["safety"]["allowed"] is True
    assert "LIMIT 500" in ok["generated_sql"]  # the re-rendered, limited SQL is what runs


# ------------------------------------------------------------------ databricks_execute


async def test_databricks_execute_ok_and_failures() -> None:
    wh = StubWarehouse()
    ctx = make_ctx(warehouse=wh)
    out = await databricks_execute({"generated_sql": "SELECT 1"}, Runtime(context=ctx))
    assert out["rows"] and out["executed"] is True and wh.executed == ["SELECT 1"]
    for kind in (
        "databricks_unavailable",
        "databricks_auth",
        "databricks_timeout",
        "databricks_error",
    ):
        ctx = make_ctx(warehouse=StubWarehouse(error=WarehouseFailure("x", kind=FailureKind(kind))))
        out = await databricks_execute({"generated_sql": "SELECT 1"}, Runtime(context=ctx))
        assert out["failure"]["kind"] == kind
    out = await databricks_execute(
        {"generated_sql": "SELECT 1"}, Runtime(context=make_ctx(warehouse=None))
    )
    assert out["failure"]["kind"] == "databricks_unavailable"


# ------------------------------------------------------------------ mock_data / degrade_or_return


async def test_mock_data_uses_widget_mock_rows() -> None:
    ctx = make_ctx()
    state = await _pg_state(ctx)
    out = await mock_data(state, Runtime(context=ctx))
    assert out["rows"] == [{"value": 42}] and out["schema"] == [
        {"name": "value", "type": "integer"}
    ]


async def test_degrade_or_return_live_caches_and_degraded_does_not() -> None:
    ctx = make_ctx()
    state = await _pg_state(ctx)
    live = state | {
        "rows": [{"value": 1}],
        "schema": [],
        "executed": True,
        "resolved_at": NOW,
        "generated_sql": "S",
    }
    out = await degrade_or_return(live, Runtime(context=ctx))
    r = out["response"]
    assert (
        r["source"] == "postgres"
        and r["live_data_unavailable"] is False
        and r["cache_hit"] is False
    )
    assert await ctx.cache.get(state["cache_key"]) is not None

    ctx2 = make_ctx()
    degraded = as_state(
        state,
        {
            "failure": {"kind": "postgres_timeout", "detail": "slow", "node": "postgres_query"},
            "rows": [{"value": 42}],
        },
    )
    out = await degrade_or_return(degraded, Runtime(context=ctx2))
    r = out["response"]
    assert r["source"] == "postgres_timeout" and r["live_data_unavailable"] is True
    assert r["error_detail"] == "slow" and r["data"] == [{"value": 42}] and r["executed"] is False
    assert await ctx2.cache.get(state["cache_key"]) is None


async def test_degrade_or_return_answers_exactly_the_response_model() -> None:
    ctx = make_ctx()
    state = await _pg_state(ctx)
    for extra in (
        {"rows": [{"value": 1}], "executed": True, "resolved_at": NOW},
        {"failure": {"kind": "postgres_error", "detail": "x", "node": "postgres_query"}},
    ):
        r = (await degrade_or_return(as_state(state, extra), Runtime(context=ctx)))["response"]
        assert set(r) == RESPONSE_FIELDS
        ResolveResponse.model_validate(r)


async def test_degrade_or_return_writes_generation_log() -> None:
    log = ListLog()
    ctx = make_ctx(generation_log=log)
    state = await _wh_state(ctx, "top-claimed-models")
    state = as_state(
        state,
        {
            "generation": {
                "metric_id": "claims_insights",
                "question": "q",
                "model_id": "m",
                "reused": False,
            },
            "safety": {"allowed": False, "rule": "single_statement"},
            "failure": {"kind": "safety_violation", "detail": "x", "node": "safety_check"},
            "rows": [],
        },
    )
    await degrade_or_return(state, Runtime(context=ctx))
    assert log.records and log.records[0]["safety_rule"] == "single_statement"
    assert log.records[0]["failure_kind"] == "safety_violation"


async def test_sql_generate_falls_back_to_logged_approved_sql_when_model_is_down() -> None:
    from domain.failures import GenerationFailure

    log = ListLog()
    ctx = make_ctx(llm=StubLLM(), generation_log=log)
    state = await _wh_state(ctx, "top-claimed-models")
    out = await sql_generate(state, Runtime(context=ctx))
    log.records.append(out["generation"] | {"safety_allowed": True})
    down = make_ctx(  # a restarted instance: empty cache, model unreachable
        llm=StubLLM(
            error=GenerationFailure("ThrottlingException", kind=FailureKind.bedrock_unavailable)
        ),
        generation_log=log,
    )
    again = await sql_generate(state, Runtime(context=down))
    assert (
        again["candidate_sql"] == StubLLM().sql and again["trace"][0]["outcome"] == "reused_logged"
    )
    bad = make_ctx(
        llm=StubLLM(error=GenerationFailure("no", kind=FailureKind.llm_invalid_output)),
        generation_log=log,
    )
    assert (await sql_generate(state, Runtime(context=bad)))["failure"][
        "kind"
    ] == "llm_invalid_output"


async def test_safety_check_binds_the_widgets_own_limit_and_dry_runs_cache_nothing() -> None:
    ctx = make_ctx(llm=StubLLM(sql="SELECT region FROM main.claims.claim_events LIMIT 50"))
    state = await _wh_state(ctx, "top-claimed-models")  # its intent has limit 5
    out = await sql_generate(state, Runtime(context=ctx))
    checked = await safety_check(as_state(state, out), Runtime(context=ctx))
    assert (
        checked["failure"]["kind"] == "safety_violation"
        and checked["safety"]["rule"] == "row_limit"
    )

    ok_ctx = make_ctx(llm=StubLLM())  # no LIMIT: the widget's limit is added
    out = await sql_generate(state, Runtime(context=ok_ctx))
    dry = await safety_check(as_state(state, out, {"dry_run": True}), Runtime(context=ok_ctx))
    assert dry["generated_sql"].endswith("LIMIT 5")
    assert await ok_ctx.cache.get(out["generation"]["approved_key"]) is None


async def test_approved_sql_is_keyed_by_the_whole_intent() -> None:
    llm = StubLLM()
    ctx = make_ctx(llm=llm)
    state = await _wh_state(ctx, "top-claimed-models")
    out = await sql_generate(state, Runtime(context=ctx))
    await safety_check(as_state(state, out), Runtime(context=ctx))
    spec = state["spec"]
    other = spec.model_copy(
        update={"data_intent": spec.data_intent.model_copy(update={"dimensions": ["channel"]})}
    )
    again = await sql_generate(as_state(state, {"spec": other}), Runtime(context=ctx))
    assert again["generation"]["reused"] is False and len(llm.requests) == 2


async def test_databricks_execute_refuses_oversized_results() -> None:
    wh = StubWarehouse(rows=[{"padding": "x" * 2000}] * 10)
    ctx = make_ctx(warehouse=wh, max_result_bytes=10_000)
    out = await databricks_execute({"generated_sql": "SELECT 1"}, Runtime(context=ctx))
    assert out["failure"]["kind"] == "databricks_error" and "limit" in out["failure"]["detail"]
    ok = await databricks_execute(
        {"generated_sql": "SELECT 1"}, Runtime(context=make_ctx(warehouse=wh))
    )
    assert "failure" not in ok
