"""Questions grounded in the catalog first, over the real PostgreSQL and Redis with the model
behind the local Converse API server (its grounding turns answer with toolUse blocks).

A question a catalog metric answers is compiled by the metric compiler (`trust`:
`compiled_from_metric`, no model-written SQL); the demo question (device models: no metric
has that dimension) is written by the model (`model_written_unverified`). Both are in the
generation log with the way taken."""

from __future__ import annotations

import psycopg
import pytest

from adapters.bedrock import BedrockSqlGenerator
from adapters.prompting import INTENT_TOOL_NAME
from domain.failures import FailureKind, GenerationFailure
from domain.ports import GroundingRequest
from fakes.bedrock_converse import (
    DUMMY_CREDENTIALS,
    MODEL_ID,
    NO_METRIC,
    REGION,
    THROTTLED,
    ConverseServer,
    IntentCall,
    Intervened,
    Reply,
    Text,
    ToolCall,
)
from tests.support.doubles import demo_config
from tests.support.servers import (
    Service,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.service(converse=True)]

BY_REGION = IntentCall(
    metric_id="claims_filed_count", dimensions=("region",), time_range="last_30d"
)
MODEL_SQL = (
    "SELECT d.model, count(DISTINCT e.claim_id) AS claims FROM main.claims.claim_events e "
    "JOIN main.claims.devices d ON e.device_id = d.device_id WHERE e.event_type = 'filed' "
    "GROUP BY d.model ORDER BY claims DESC LIMIT 5"
)


# ------------------------------------------------------------------ the adapter


def _ground_request() -> GroundingRequest:
    metrics = demo_config()[1]
    return GroundingRequest(
        question="How many claims were filed per region in the last 30 days?",
        metrics=(metrics["claims_filed_count"], metrics["alerts_raised_count"]),
        max_rows=100,
    )


def _generator(converse: ConverseServer) -> BedrockSqlGenerator:
    return BedrockSqlGenerator(
        model_id=MODEL_ID,
        region=REGION,
        endpoint_url=converse.url,
        credentials=DUMMY_CREDENTIALS,
        timeout_s=2.0,
    )


async def test_grounding_turn_on_the_wire(converse: ConverseServer) -> None:
    converse.reset()
    converse.script_intents(BY_REGION)
    g = await _generator(converse).ground(_ground_request())
    assert g.intent is not None and g.intent["metric_id"] == "claims_filed_count"
    assert g.intent["dimensions"] == ["region"] and g.input_tokens == 640
    (req,) = converse.grounding_requests
    assert converse.requests == []  # no SQL turn
    assert req.forced_tool == INTENT_TOOL_NAME
    assert [t["toolSpec"]["name"] for t in req.tool_config["tools"]] == [INTENT_TOOL_NAME]
    assert "claims_filed_count" in req.system_text and "alerts_raised_count" in req.system_text
    assert "filed per region" in req.user_text and "filed per region" not in req.system_text


async def test_grounding_answers_and_failures(converse: ConverseServer) -> None:
    gen = _generator(converse)
    converse.reset()
    converse.script_intents(NO_METRIC)
    g = await gen.ground(_ground_request())
    assert g.intent is None and "No catalog metric" in g.reason
    cases: list[tuple[Reply, FailureKind]] = [
        (Text(), FailureKind.llm_invalid_output),
        (ToolCall(), FailureKind.llm_invalid_output),  # submit_sql, not express_intent
        (ToolCall(name=INTENT_TOOL_NAME, input={"metric_id": "x"}), FailureKind.llm_invalid_output),
        (Intervened(), FailureKind.llm_refused),
        (THROTTLED, FailureKind.bedrock_unavailable),
    ]
    for reply, kind in cases:
        converse.script_intents(reply)
        with pytest.raises(GenerationFailure) as info:
            await gen.ground(_ground_request())
        assert info.value.kind == kind, reply


# ------------------------------------------------------------------ the service


async def _log_rows(svc: Service, widget_id: str) -> list[tuple]:
    url = svc.settings.database_url
    assert url is not None
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT way, grounded_intent, generated_sql, safety_allowed, grounding "
            "FROM sql_generation_log WHERE widget_id = %s ORDER BY id",
            (widget_id,),
        )
        return await cur.fetchall()


async def test_a_question_a_metric_answers_is_compiled_from_the_metric(
    svc: Service, converse: ConverseServer
) -> None:
    spec = {
        "title": "Claims filed by region (asked)",
        "kind": "bar",
        "mock_data": [{"region": "mock", "value": 1}],
        "data_intent": {
            "metric_id": "claims_insights",
            "time_range": "last_30d",
            "question": "How many claims were filed in each region in the last 30 days?",
        },
    }
    assert (await svc.client.put("/v1/widgets/q-by-region", json=spec)).status_code in (200, 201)
    converse.reset()
    converse.script_intents(BY_REGION)
    body = (await svc.data("q-by-region", refresh=True)).json()
    assert body["source"] == "databricks" and body["trust"] == "compiled_from_metric", body
    assert converse.requests == [] and len(converse.grounding_requests) == 1  # no model SQL
    # the same rows as the compiled widget over the same metric
    compiled = (await svc.data("claims-filed-by-region", refresh=True)).json()
    assert compiled["trust"] is None
    assert sorted(map(str, body["data"])) == sorted(map(str, compiled["data"]))
    assert body["row_count"] > 0
    ((way, intent, sql, allowed, _reason),) = await _log_rows(svc, "q-by-region")
    assert way == "compiled_from_metric" and allowed is True
    assert intent["metric_id"] == "claims_filed_count" and intent["dimensions"] == ["region"]
    assert "count(distinct claim_id)" in sql.lower()

    # cached: the trust comes with the cached answer
    cached = (await svc.data("q-by-region")).json()
    assert cached["cache_hit"] is True and cached["trust"] == "compiled_from_metric"
    # forced again: the approved intent is compiled again, the model is not asked
    again = (await svc.data("q-by-region", refresh=True)).json()
    assert again["trust"] == "compiled_from_metric" and again["cache_hit"] is False
    assert len(converse.grounding_requests) == 1 and converse.requests == []


async def test_the_demo_question_no_metric_answers_is_model_written(
    svc: Service, converse: ConverseServer
) -> None:
    converse.reset()  # the grounding turn: no metric fits (the fake's default)
    converse.script(ToolCall(sql=MODEL_SQL))
    body = (await svc.data("top-claimed-models", refresh=True)).json()
    assert body["source"] == "databricks" and body["trust"] == "model_written_unverified", body
    assert len(converse.grounding_requests) == 1 and len(converse.requests) == 1
    assert "model" in body["data"][0]
    rows = await _log_rows(svc, "top-claimed-models")
    assert rows[-1][0] == "model_written_unverified" and rows[-1][1] is None
    assert rows[-1][4].startswith("no metric fits")


async def test_a_model_intent_that_does_not_validate_is_not_compiled(
    svc: Service, converse: ConverseServer
) -> None:
    spec = {
        "title": "Claims by model (asked)",
        "kind": "table",
        "mock_data": [{"model": "mock", "claims": 1}],
        "data_intent": {
            "metric_id": "claims_insights",
            "limit": 5,
            "question": "Top 5 device models by claims filed?",
        },
    }
    assert (await svc.client.put("/v1/widgets/q-by-model", json=spec)).status_code in (200, 201)
    converse.reset()
    # the model stretches a metric to a dimension it does not have: refused, model SQL
    converse.script_intents(IntentCall(metric_id="claims_filed_count", dimensions=("model",)))
    converse.script(ToolCall(sql=MODEL_SQL))
    body = (await svc.data("q-by-model", refresh=True)).json()
    assert body["trust"] == "model_written_unverified" and len(converse.requests) == 1, body
    ((way, intent, _sql, _allowed, reason),) = await _log_rows(svc, "q-by-model")
    assert way == "model_written_unverified" and intent is None
    assert "dimension 'model' is not allowed" in reason
