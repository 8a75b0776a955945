"""The last good answer before the mock on each failure kind of the LLM path, over the real
PostgreSQL and Redis, with the model behind the local Converse API server.

A question the model answered is then answered from its approved SQL, so the model is only
asked again once that approval is gone (it expired, or the model, schema or policy changed).
Each case below removes it (the approved entry in Redis and its log rows, which stand in for
an unreachable model), makes the model fail one way, and forces a refresh: the answer must be
the last good rows, flagged with that kind, never the mock."""

from __future__ import annotations

import psycopg
import pytest

from fakes.bedrock_converse import (
    DROP_SQL,
    EXPIRED_TOKEN,
    ConverseServer,
    Intervened,
    Reply,
    Slow,
    Text,
    ToolCall,
)
from tests.support.servers import (
    Service,
    redis_client_of,
    settled,
)

WIDGET = "q-last-good"
GOOD_SQL = (
    "SELECT d.model, count(DISTINCT e.claim_id) AS claims FROM main.claims.claim_events e "
    "JOIN main.claims.devices d ON e.device_id = d.device_id WHERE e.event_type = 'filed' "
    "GROUP BY d.model ORDER BY claims DESC LIMIT 5"
)
MOCK = [{"model": "mock", "claims": 1}]
# the LLM budget: the good answer and the five failing requests before the rate-limited one
BUDGET = 6
pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.service(
        converse=True,
        bedrock_timeout_s=1.5,
        bedrock_guardrail_id="gr-test",
        bedrock_guardrail_version="1",
        llm_rate_limit=f"{BUDGET}/hour",
    ),
]


async def _forget_approval(svc: Service) -> None:
    """What expiry (or a new model, schema or policy) does to the approval of the question."""
    cache = svc.res.context.cache
    client = redis_client_of(cache)
    prefix = svc.settings.cache_prefix
    approved = [k async for k in client.scan_iter(f"{prefix}g*:default:claims_insights:*")]
    if approved:
        await client.delete(*approved)
        await settled(cache)
    url = svc.settings.database_url
    assert url is not None
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("DELETE FROM sql_generation_log WHERE widget_id = %s", (WIDGET,))


async def test_each_llm_failure_kind_answers_the_last_good(
    svc: Service, converse: ConverseServer
) -> None:
    spec = {
        "title": "Top claimed models",
        "kind": "table",
        "mock_data": MOCK,
        "data_intent": {"metric_id": "claims_insights", "question": "Top claimed models?"},
    }
    assert (await svc.client.put(f"/v1/widgets/{WIDGET}", json=spec)).status_code in (200, 201)
    converse.script(ToolCall(sql=GOOD_SQL))
    good = (await svc.data(WIDGET, refresh=True)).json()
    assert good["source"] == "databricks" and good["row_count"] > 0, good
    assert good["data"] != MOCK
    cases: list[tuple[Reply, str]] = [
        (EXPIRED_TOKEN, "bedrock_unavailable"),
        (Text(), "llm_invalid_output"),
        (Slow(5.0), "llm_timeout"),
        (Intervened(), "llm_refused"),
        (ToolCall(sql=DROP_SQL), "safety_violation"),
        (ToolCall(sql=GOOD_SQL), "llm_rate_limited"),  # the budget is spent: no request
    ]
    for reply, kind in cases:
        await _forget_approval(svc)
        converse.reset()
        converse.script(reply)
        body = (await svc.data(WIDGET, refresh=True)).json()
        assert body["source"] == kind and body["live_data_unavailable"] is True, body
        assert body["stale"] is True and body["stale_reason"] == kind, body
        assert body["data"] == good["data"] and body["resolved_at"] == good["resolved_at"]
        assert body["freshness_seconds"] > 0 and body["error_detail"]
        if kind == "llm_rate_limited":
            assert converse.requests == []
        else:
            assert len(converse.requests) == 1, kind

    # a question never answered has no last good answer: the mock, flagged
    spec["data_intent"]["question"] = "Never answered?"  # type: ignore[index]
    assert (await svc.client.put("/v1/widgets/q-never", json=spec)).status_code in (200, 201)
    body = (await svc.data("q-never")).json()
    assert body["source"] == "llm_rate_limited" and body["live_data_unavailable"] is True
    assert body["stale"] is False and body["stale_reason"] is None and body["data"] == MOCK
