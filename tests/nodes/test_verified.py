"""Verified answers in sql_generate (doubles: StubLLM, an in-memory store of verified
answers, the demo catalog): a question an owner verified is answered without the model
(way and trust `verified`), row filters still bind it, and one a catalog change broke is
flagged for re-verification and never served (the usual way answers)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from langgraph.runtime import Runtime

from domain.access import RowAccess, TableFilter
from domain.ports import FixedTableSchemas, TableSchema, VerifiedAnswer
from graph.context import Context
from graph.state import State
from nodes.degrade_or_return import degrade_or_return
from nodes.route import route
from nodes.safety_check import safety_check
from nodes.sql_generate import sql_generate
from nodes.verified import recheck_verified, reverification_problem
from tests.support.doubles import ListLog, StubLLM, as_state, make_ctx

WIDGET = "top-claimed-models"
BY_REGION = {"metric_id": "claims_filed_count", "dimensions": ["region"], "time_range": "last_30d"}
SQL = "SELECT region, count(*) AS n FROM main.claims.claim_events GROUP BY region"
WEST = RowAccess(
    tenant="default", tables=(TableFilter("main.claims.claim_events", "region", ("west",)),)
)


@dataclass
class MemoryVerified:
    """VerifiedAnswers in memory: (tenant, question) -> answer."""

    answers: dict[tuple[str, str], VerifiedAnswer] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)

    async def read(self, tenant: str, question: str) -> VerifiedAnswer | None:
        return self.answers.get((tenant, question))

    async def get(self, tenant: str, question: str) -> VerifiedAnswer | None:
        return self.answers.get((tenant, question))

    async def unflagged(self) -> list[VerifiedAnswer]:
        return [a for a in self.answers.values() if not a.needs_reverification]

    async def flag(self, tenant: str, question: str, reason: str) -> None:
        self.flags.append(reason)
        a = self.answers[(tenant, question)]
        self.answers[(tenant, question)] = replace(
            a, needs_reverification=True, reverification_reason=reason
        )

    async def put(self, answer: VerifiedAnswer) -> bool:
        created = (answer.tenant, answer.question) not in self.answers
        self.answers[(answer.tenant, answer.question)] = answer
        return created

    async def delete(self, tenant: str, question: str, *, widget_id: str, subject: str) -> bool:
        return self.answers.pop((tenant, question), None) is not None


async def _state(ctx: Context) -> State:
    return as_state(
        {"widget_id": WIDGET}, await route(as_state({"widget_id": WIDGET}), Runtime(context=ctx))
    )


async def _verified(ctx: Context, store: MemoryVerified, **answer: object) -> None:
    question = ctx.registry.widget(WIDGET).data_intent.question  # type: ignore[union-attr]
    assert question is not None
    fields: dict = {"intent": None, "sql": None} | answer
    await store.put(
        VerifiedAnswer(
            "default", question, WIDGET, verified_by="owner@acme", verified_at=1e9, **fields
        )
    )


async def test_a_verified_intent_is_answered_without_the_model() -> None:
    llm, store, log = StubLLM(intent=BY_REGION), MemoryVerified(), ListLog()
    ctx = make_ctx(llm=llm, verified_answers=store, generation_log=log)
    await _verified(ctx, store, intent=BY_REGION)
    state = await _state(ctx)
    out = await sql_generate(state, Runtime(context=ctx))
    assert out["trace"][0]["outcome"] == "verified" and out["trust"] == "verified"
    assert llm.groundings == [] and llm.requests == []  # the model is not asked
    assert out["verification"] == {
        "verified_by": "owner@acme",
        "verified_at": "2001-09-09T01:46:40+00:00",
    }
    sql = out["candidate_sql"].lower()
    assert "count(distinct claim_id)" in sql and sql.endswith("limit 5")  # widget's limit
    gen = out["generation"]
    assert gen["way"] == "verified" and gen["intent"] == BY_REGION and gen["model_id"] is None
    # through safety_check (row filters) and degrade_or_return: the response says so
    state = as_state(state, {"access": WEST}, out)
    state = as_state(state, await safety_check(state, Runtime(context=ctx)))
    assert "'west'" in (state["generated_sql"] or "")
    state = as_state(state, {"rows": [], "executed": True, "resolved_at": 1.0})
    response = (await degrade_or_return(state, Runtime(context=ctx)))["response"]
    assert response["trust"] == "verified" and response["verification"] == out["verification"]
    (record,) = log.records  # in the generation log, with the way taken
    assert record["way"] == "verified" and record["safety_allowed"] is True
    assert await ctx.cache.get(gen.get("approved_key") or "none") is None  # nothing approved


async def test_verified_sql_gets_each_callers_row_filters() -> None:
    llm, store = StubLLM(), MemoryVerified()
    ctx = make_ctx(llm=llm, verified_answers=store)
    await _verified(ctx, store, sql=SQL)
    state = await _state(ctx)
    out = await sql_generate(state, Runtime(context=ctx))
    assert out["trust"] == "verified" and llm.requests == [] and llm.groundings == []
    west = await safety_check(as_state(state, {"access": WEST}, out), Runtime(context=ctx))
    anyone = await safety_check(as_state(state, out), Runtime(context=ctx))
    assert "'west'" in west["generated_sql"] and "'west'" not in anyone["generated_sql"]
    # another tenant's identical question is not verified
    other = await sql_generate(
        as_state(state, {"access": RowAccess(tenant="globex")}), Runtime(context=ctx)
    )
    assert other["trust"] == "model_written_unverified" and len(llm.requests) == 1


async def test_a_broken_verified_answer_is_flagged_and_the_usual_way_answers() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"intent": {"metric_id": "no_such_metric"}}, "unknown metric"),
        ({"intent": BY_REGION | {"dimensions": ["model"]}}, "'model' is not allowed"),
        ({"sql": "SELECT gone_column FROM main.claims.claim_events"}, "no longer passes"),
        ({"sql": "SELECT * FROM main.claims.secret_table"}, "no longer passes"),
    ]
    schemas = FixedTableSchemas(
        (TableSchema("main.claims.claim_events", (("region", "string"), ("claim_id", "string"))),)
    )
    for answer, why in cases:
        llm, store = StubLLM(), MemoryVerified()
        ctx = make_ctx(llm=llm, verified_answers=store, table_schemas=schemas)
        await _verified(ctx, store, **answer)
        out = await sql_generate(await _state(ctx), Runtime(context=ctx))
        assert out["trust"] == "model_written_unverified" and len(llm.requests) == 1, answer
        assert "verification" not in out
        (reason,) = store.flags
        assert why in reason, (answer, reason)
        flagged = next(iter(store.answers.values()))
        assert flagged.needs_reverification and reverification_problem(ctx, flagged, 5) == reason
        # flagged: never served again, nor checked again
        again = await sql_generate(await _state(ctx), Runtime(context=ctx))
        assert again["trust"] == "model_written_unverified" and len(store.flags) == 1


def test_reverification_problem_of_a_sound_answer_is_none() -> None:
    ctx = make_ctx()
    good = VerifiedAnswer("default", "q", WIDGET, BY_REGION, None, "o", 0.0)
    assert reverification_problem(ctx, good, None) is None
    sql = VerifiedAnswer("default", "q", WIDGET, None, SQL, "o", 0.0)
    assert reverification_problem(ctx, sql, None) is None


async def test_recheck_flags_only_the_answers_the_catalog_broke() -> None:
    store = MemoryVerified()
    ctx = make_ctx(verified_answers=store)
    for question, intent in (("good", BY_REGION), ("broken", BY_REGION | {"metric_id": "gone"})):
        await store.put(VerifiedAnswer("acme", question, WIDGET, intent, None, "o", 0.0))
    assert await recheck_verified(ctx) == 1
    assert not store.answers[("acme", "good")].needs_reverification
    broken = store.answers[("acme", "broken")]
    assert broken.needs_reverification and "unknown metric" in (broken.reverification_reason or "")
    assert await recheck_verified(ctx) == 0  # a flagged answer is not checked again
    assert await recheck_verified(make_ctx()) == 0  # no store: nothing to check


async def test_a_verified_answer_needs_no_model_configured() -> None:
    store = MemoryVerified()
    ctx = make_ctx(llm=None, verified_answers=store)
    await _verified(ctx, store, sql=SQL)
    out = await sql_generate(await _state(ctx), Runtime(context=ctx))
    assert out["trust"] == "verified" and "failure" not in out
    del store.answers[next(iter(store.answers))]  # withdrawn: the model is needed again
    out = await sql_generate(await _state(ctx), Runtime(context=ctx))
    assert out["failure"]["kind"] == "bedrock_unconfigured"
