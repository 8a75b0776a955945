"""A question the model grounds in a PostgreSQL metric (the KPI history) is answered by
postgres_query with the grounded intent, not by SQL the model writes (doubles: StubLLM,
StubGateway, the in-memory cache, the demo catalog)."""

from __future__ import annotations

from langgraph.runtime import Runtime

from domain.access import RowAccess, SeriesFilter
from graph.context import Context
from graph.routing import route_after_sql_generate
from graph.state import State
from nodes._grounding import postgres_catalog
from nodes.degrade_or_return import degrade_or_return
from nodes.postgres_query import postgres_query
from nodes.route import route
from nodes.sql_generate import sql_generate
from tests.support.doubles import ListLog, StubGateway, StubLLM, as_state, make_ctx

QUESTION_WIDGET = "top-claimed-models"  # a question widget over the llm metric
OPEN_BY_TEAM = {"metric_id": "active_issues_count", "dimensions": ["team"]}


async def _state(ctx: Context, **extra: object) -> State:
    given = as_state({"widget_id": QUESTION_WIDGET}, extra)
    return as_state(given, await route(given, Runtime(context=ctx)))


def test_kpi_catalog_is_the_postgres_metrics_with_an_allowlisted_query() -> None:
    names = set(postgres_catalog(make_ctx()))
    assert {"active_issues_count", "claims_in_progress_count", "nba_taken_pct"} <= names
    assert "claims_filed_count" not in names and "claims_insights" not in names
    assert postgres_catalog(make_ctx(postgres=None)) == {}
    assert postgres_catalog(make_ctx(postgres=StubGateway(mapped=False))) == {}


async def test_the_router_takes_the_way_sql_generate_decided() -> None:
    ctx = make_ctx(llm=StubLLM(intent=OPEN_BY_TEAM))
    state = await _state(ctx)
    out = await sql_generate(state, Runtime(context=ctx))
    assert await route_after_sql_generate(as_state(state, out)) == "postgres_query"
    warehouse = make_ctx(llm=StubLLM(intent={"metric_id": "claims_filed_count"}))
    other = await sql_generate(await _state(warehouse), Runtime(context=warehouse))
    assert await route_after_sql_generate(as_state(state, other)) == "safety_check"
    failed = {"failure": {"kind": "llm_timeout", "detail": "x", "node": "sql_generate"}}
    assert await route_after_sql_generate(as_state(state, out, failed)) == "mock_data"


async def test_a_kpi_question_is_answered_from_postgres_without_model_sql() -> None:
    llm, gateway, log = StubLLM(intent=OPEN_BY_TEAM), StubGateway(), ListLog()
    ctx = make_ctx(llm=llm, postgres=gateway, generation_log=log)
    state = await _state(ctx)
    out = await sql_generate(state, Runtime(context=ctx))
    assert out["trace"][0]["outcome"] == "grounded" and out["trust"] == "compiled_from_metric"
    assert llm.requests == [] and len(llm.groundings) == 1  # the model wrote no SQL
    offered = {m.name for m in llm.groundings[0].metrics}
    assert {"active_issues_count", "claims_filed_count"} <= offered
    assert "candidate_sql" not in out
    assert out["backend"] == "postgres" and out["metric"].name == "active_issues_count"
    assert out["grounded"].dimensions == ["team"] and out["grounded"].limit == 5  # widget's cap
    state = as_state(state, out)
    ran = await postgres_query(state, Runtime(context=ctx))
    assert ran["trace"][0]["outcome"] == "ok" and gateway.calls == ["active_issues_count"]
    state = as_state(state, ran)
    done = await degrade_or_return(state, Runtime(context=ctx))
    response = done["response"]
    assert response["source"] == "postgres" and response["trust"] == "compiled_from_metric"
    assert response["data"] == [{"value": 7}]
    (record,) = log.records
    assert record["way"] == "compiled_from_metric" and record["metric_id"] == "claims_insights"
    assert record["intent"]["metric_id"] == "active_issues_count"
    assert "kpi_metrics_history" in record["generated_sql"] and record["failure_kind"] is None


async def test_the_callers_row_rules_are_those_of_the_grounded_metric() -> None:
    gateway = StubGateway()
    ctx = make_ctx(llm=StubLLM(intent=OPEN_BY_TEAM), postgres=gateway)
    mine = SeriesFilter("active_issues_count", "team", ("payments",))
    access = RowAccess(series=(mine, SeriesFilter("nba_taken_pct", "channel", ())))
    state = await _state(ctx, access=access)
    state = as_state(state, await sql_generate(state, Runtime(context=ctx)))
    await postgres_query(state, Runtime(context=ctx))
    assert gateway.row_filters == [mine]


async def test_a_kpi_intent_that_does_not_validate_falls_back_to_model_sql() -> None:
    llm = StubLLM(intent={"metric_id": "active_issues_count", "dimensions": ["region"]})
    ctx = make_ctx(llm=llm)
    out = await sql_generate(await _state(ctx), Runtime(context=ctx))
    assert out["trust"] == "model_written_unverified" and len(llm.requests) == 1
    assert "grounded" not in out and out["candidate_sql"] == llm.sql
    assert "dimension 'region' is not allowed" in out["generation"]["grounding"]
    assert out["generation"]["input_tokens"] == 7 + 10  # both turns counted


async def test_a_kpi_answer_is_reused_as_its_intent_without_the_model() -> None:
    llm = StubLLM(intent=OPEN_BY_TEAM)
    ctx = make_ctx(llm=llm)
    state = await _state(ctx)
    first = await sql_generate(state, Runtime(context=ctx))
    again = await sql_generate(state, Runtime(context=ctx))
    assert again["trace"][0]["outcome"] == "reused_approved" and len(llm.groundings) == 1
    assert again["generation"]["reused"] is True and again["trust"] == "compiled_from_metric"
    assert again["grounded"] == first["grounded"] and again["backend"] == "postgres"
    # once PostgreSQL no longer serves the metric, the question is asked again
    unmapped = make_ctx(llm=llm, cache=ctx.cache, postgres=StubGateway(mapped=False))
    asked = await sql_generate(state, Runtime(context=unmapped))
    assert len(llm.groundings) == 2 and asked["trust"] == "model_written_unverified"


async def test_a_dry_run_caches_no_approved_intent() -> None:
    llm = StubLLM(intent=OPEN_BY_TEAM)
    ctx = make_ctx(llm=llm)
    state = await _state(ctx, dry_run=True)
    out = await sql_generate(state, Runtime(context=ctx))
    assert await ctx.cache.get(out["generation"]["approved_key"]) is None
    shown = await postgres_query(as_state(state, out), Runtime(context=ctx))
    assert (
        shown["trace"][0]["outcome"] == "dry_run"
        and "kpi_metrics_history" in shown["generated_sql"]
    )


async def test_a_kpi_answer_is_kept_under_the_stricter_freshness_policy() -> None:
    """claims_insights keeps answers 900 s with an hour of stale-if-error; a question it
    grounds in critical_alerts_count_15min (30 s, never stale on error) is kept and served
    under the metric's stricter windows, so old alert counts never stand in for a failure."""
    ctx = make_ctx(llm=StubLLM(intent={"metric_id": "critical_alerts_count_15min"}))
    state = await _state(ctx)
    asked = state["routing"]
    assert asked.ttl_seconds == 900 and asked.stale_if_error_seconds == 3600
    out = await sql_generate(state, Runtime(context=ctx))
    routing = out["routing"]
    assert (routing.backend, routing.ttl_seconds) == ("postgres", 30)
    assert routing.stale_if_error_seconds == 0 and routing.swr_seconds == 15
    assert routing.generator == asked.generator  # still a question's answer
    # a metric with looser windows than the question's keeps the question's
    looser = make_ctx(llm=StubLLM(intent={"metric_id": "nba_taken_pct"}))
    kept = (await sql_generate(await _state(looser), Runtime(context=looser)))["routing"]
    assert kept.ttl_seconds == 300 and kept.stale_if_error_seconds == 3600
