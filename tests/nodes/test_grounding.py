"""sql_generate grounds a free-text question in the catalog first (doubles: StubLLM,
the in-memory cache, the demo catalog); the trust field follows the way taken."""

from __future__ import annotations

from langgraph.runtime import Runtime

from domain.failures import FailureKind, GenerationFailure
from graph.context import Context
from graph.state import State
from nodes.degrade_or_return import degrade_or_return
from nodes.route import route
from nodes.safety_check import safety_check
from nodes.sql_generate import grounding_catalog, sql_generate
from tests.support.doubles import ListLog, StubLLM, as_state, make_ctx

QUESTION_WIDGET = "top-claimed-models"
BY_REGION = {"metric_id": "claims_filed_count", "dimensions": ["region"], "time_range": "last_30d"}


async def _state(ctx: Context, widget_id: str = QUESTION_WIDGET) -> State:
    return as_state(
        {"widget_id": widget_id}, await route({"widget_id": widget_id}, Runtime(context=ctx))
    )


def test_catalog_offers_compiled_warehouse_metrics_only() -> None:
    names = set(grounding_catalog(make_ctx()))
    assert "claims_filed_count" in names and "alerts_raised_count" in names
    # postgres metrics and the llm-generated one are not compiled warehouse metrics
    assert "active_issues_count" not in names and "claims_insights" not in names


async def test_an_intent_that_validates_is_compiled_not_model_written() -> None:
    llm = StubLLM(intent=BY_REGION)
    ctx = make_ctx(llm=llm)
    state = await _state(ctx)
    out = await sql_generate(state, Runtime(context=ctx))
    assert out["trace"][0]["outcome"] == "grounded" and out["trust"] == "compiled_from_metric"
    assert llm.requests == [] and len(llm.groundings) == 1  # the model wrote no SQL
    assert llm.groundings[0].question.startswith("Which 5 device models")
    sql = out["candidate_sql"].lower()
    assert "count(distinct claim_id)" in sql and "event_type = 'filed'" in sql
    assert "group by region" in sql and sql.endswith("limit 5")  # the widget's limit binds
    gen = out["generation"]
    assert (
        gen["way"] == "compiled_from_metric" and gen["intent"]["metric_id"] == "claims_filed_count"
    )
    assert gen["generated_sql"] == out["candidate_sql"]


async def test_no_metric_fits_then_the_model_writes_sql() -> None:
    llm = StubLLM()  # intent None: the model says no metric fits
    ctx = make_ctx(llm=llm)
    out = await sql_generate(await _state(ctx), Runtime(context=ctx))
    assert out["trace"][0]["outcome"] == "llm" and out["trust"] == "model_written_unverified"
    assert out["candidate_sql"] == llm.sql and len(llm.requests) == 1
    assert out["generation"]["way"] == "model_written_unverified"
    assert out["generation"]["grounding"].startswith("no metric fits")


async def test_an_intent_that_fails_validation_falls_back_to_model_sql() -> None:
    for bad in (
        {"metric_id": "claims_filed_count", "dimensions": ["model"]},  # not a dimension
        {"metric_id": "active_issues_count"},  # not in the grounding catalog
        {"metric_id": "claims_filed_count", "grain": "fortnight"},  # not an intent
    ):
        llm = StubLLM(intent=bad)
        ctx = make_ctx(llm=llm)
        out = await sql_generate(await _state(ctx), Runtime(context=ctx))
        assert out["trust"] == "model_written_unverified", bad
        assert len(llm.requests) == 1, bad
        assert "does not fit" in out["generation"]["grounding"], bad


async def test_an_invalid_grounding_answer_falls_back_but_other_failures_degrade() -> None:
    invalid = GenerationFailure("no tool call", kind=FailureKind.llm_invalid_output)
    llm = StubLLM(ground_error=invalid)
    ctx = make_ctx(llm=llm)
    out = await sql_generate(await _state(ctx), Runtime(context=ctx))
    assert out["trust"] == "model_written_unverified" and len(llm.requests) == 1
    for kind in (FailureKind.llm_refused, FailureKind.llm_timeout, FailureKind.bedrock_unavailable):
        llm = StubLLM(ground_error=GenerationFailure("x", kind=kind), intent=BY_REGION)
        ctx = make_ctx(llm=llm)
        out = await sql_generate(await _state(ctx), Runtime(context=ctx))
        assert out["failure"]["kind"] == kind and llm.requests == [], kind
        assert out["generation"]["failure_kind"] == kind.value


async def test_a_grounded_answer_is_reused_as_its_intent_without_the_model() -> None:
    llm = StubLLM(intent=BY_REGION)
    ctx = make_ctx(llm=llm)
    state = await _state(ctx)
    out = await sql_generate(state, Runtime(context=ctx))
    checked = await safety_check(as_state(state, out), Runtime(context=ctx))
    assert checked["safety"]["allowed"] is True
    cached = await ctx.cache.get(out["generation"]["approved_key"])
    assert cached is not None and cached["intent"]["metric_id"] == "claims_filed_count"
    again = await sql_generate(state, Runtime(context=ctx))
    assert again["trace"][0]["outcome"] == "reused_approved"
    assert again["trust"] == "compiled_from_metric" and again["generation"]["reused"] is True
    assert len(llm.groundings) == 1 and llm.requests == []
    assert again["candidate_sql"] == out["candidate_sql"]  # same clock: same SQL


async def test_a_compiled_answer_is_never_replayed_from_the_log() -> None:
    log = ListLog()
    ctx = make_ctx(llm=StubLLM(intent=BY_REGION), generation_log=log)
    state = await _state(ctx)
    out = await sql_generate(state, Runtime(context=ctx))
    log.records.append(out["generation"] | {"safety_allowed": True})
    down = make_ctx(
        llm=StubLLM(ground_error=GenerationFailure("x", kind=FailureKind.bedrock_unavailable)),
        generation_log=log,
    )
    again = await sql_generate(state, Runtime(context=down))
    # its SQL has the time bounds of its day: the failure shows instead of old bounds
    assert again["failure"]["kind"] == "bedrock_unavailable"


async def test_rate_limit_spends_one_unit_per_question() -> None:
    class Budget:
        limit = "1/hour"
        taken = 0

        async def take(self, tenant: str) -> float | None:
            self.taken += 1
            return None if self.taken == 1 else 60.0

    budget = Budget()
    llm = StubLLM()  # no metric fits: two model turns, one unit of budget
    ctx = make_ctx(llm=llm, llm_budget=budget)
    state = await _state(ctx)
    out = await sql_generate(state, Runtime(context=ctx))
    assert out["trust"] == "model_written_unverified" and budget.taken == 1
    other = make_ctx(llm=StubLLM(intent=BY_REGION), llm_budget=budget)
    limited = await sql_generate(await _state(other), Runtime(context=other))
    assert limited["failure"]["kind"] == "llm_rate_limited"


async def test_trust_is_in_the_response_of_question_widgets_only() -> None:
    ctx = make_ctx(llm=StubLLM(intent=BY_REGION))
    state = await _state(ctx)
    state = as_state(state, await sql_generate(state, Runtime(context=ctx)))
    state = as_state(state, await safety_check(state, Runtime(context=ctx)))
    state = as_state(
        state, {"rows": [{"region": "west", "value": 3}], "executed": True, "resolved_at": 1.0}
    )
    out = await degrade_or_return(state, Runtime(context=ctx))
    assert out["response"]["trust"] == "compiled_from_metric"
    entry = await ctx.cache.get(state["cache_key"])
    assert entry is not None and entry["trust"] == "compiled_from_metric"

    plain = await _state(ctx, "claims-filed-by-region")
    plain = as_state(plain, await sql_generate(plain, Runtime(context=ctx)))
    plain = as_state(plain, {"rows": [], "executed": True, "resolved_at": 1.0})
    assert (await degrade_or_return(plain, Runtime(context=ctx)))["response"]["trust"] is None


async def test_row_filters_bind_the_grounded_way_and_approval_stays_per_tenant() -> None:
    from domain.access import RowAccess, TableFilter

    llm = StubLLM(intent=BY_REGION)
    ctx = make_ctx(llm=llm)
    west = RowAccess(
        tenant="acme", tables=(TableFilter("main.claims.claim_events", "region", ("west",)),)
    )
    state = await _state(ctx) | {"access": west}
    out = await sql_generate(state, Runtime(context=ctx))
    assert out["trust"] == "compiled_from_metric" and ":acme:" in out["generation"]["approved_key"]
    checked = await safety_check(as_state(state, out), Runtime(context=ctx))
    assert checked["safety"]["allowed"] is True
    assert "'west'" in checked["generated_sql"] and "'west'" not in out["candidate_sql"]
    # another tenant's identical question is grounded again (no reuse across tenants)
    other = await _state(ctx) | {"access": RowAccess(tenant="globex")}
    again = await sql_generate(other, Runtime(context=ctx))
    assert again["trace"][0]["outcome"] == "grounded" and len(llm.groundings) == 2
