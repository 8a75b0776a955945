"""Integration: the warehouse path over HTTP, on real PostgreSQL and Redis, with embedded
DuckDB, a local Databricks Statement Execution server (the real connector) and a local
Bedrock Converse server (the real langchain-aws client)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest

from fakes.bedrock_converse import (
    DROP_SQL,
    EXPIRED_TOKEN,
    MODEL_ID,
    THROTTLED,
    ConverseServer,
    Intervened,
    Reply,
    Slow,
    Text,
    ToolCall,
)
from fakes.databricks_sea import FakeSeaServer
from tests.support.servers import (
    Service,
    create_database,
    drop_database,
    running_service,
    sea_settings,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.service(converse=True)]

WAREHOUSE_WIDGETS = [
    "claims-filed-by-region",
    "claims-paid-weekly",
    "avg-claim-amount-by-channel",
    "critical-alerts-by-service",
    "alert-mttr-by-severity",
    "devices-by-manufacturer",
]
TOP_MODELS_SQL = (
    "SELECT d.model, count(DISTINCT e.claim_id) AS claims FROM main.claims.claim_events e "
    "JOIN main.claims.devices d ON e.device_id = d.device_id WHERE e.event_type = 'filed' "
    "AND e.event_ts >= current_timestamp() - INTERVAL 30 DAYS GROUP BY d.model ORDER BY claims DESC LIMIT 5"
)


@pytest.fixture(autouse=True)
def _reset(converse: ConverseServer) -> None:
    converse.reset()


async def log_rows(url: str) -> list[dict]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = conn.cursor(row_factory=psycopg.rows.dict_row)
        await cur.execute("SELECT * FROM sql_generation_log ORDER BY id")
        return await cur.fetchall()


@pytest.mark.parametrize("widget_id", WAREHOUSE_WIDGETS)
async def test_every_demo_warehouse_widget_answers_live_from_duckdb(
    svc: Service, widget_id: str
) -> None:
    body = (await svc.data(widget_id, refresh=True)).json()
    assert body["source"] == "databricks" and body["backend"] == "databricks", body
    assert body["live_data_unavailable"] is False and body["executed"] is True
    assert body["row_count"] > 0 and body["generated_sql"].upper().startswith("SELECT")
    assert body["schema"][-1]["name"] == "value"


async def test_warehouse_answer_is_cached(svc: Service) -> None:
    await svc.data("claims-filed-by-region", refresh=True)
    body = (await svc.data("claims-filed-by-region", trace=True)).json()
    assert body["cache_hit"] is True and [t["node"] for t in body["trace"]] == [
        "route",
        "cache_lookup",
        "degrade_or_return",
    ]


async def test_dry_run_shows_checked_sql_and_runs_nothing(svc: Service) -> None:
    wh = svc.res.context.warehouse
    before = len(wh.executed_statements)  # type: ignore[union-attr]
    body = (await svc.data("claims-paid-weekly", dry_run=True, trace=True)).json()
    assert body["executed"] is False and body["dry_run"] is True and body["data"] == []
    assert (
        "main.claims.claim_events" in body["generated_sql"]
        and "LIMIT" in body["generated_sql"].upper()
    )
    assert "databricks_execute" not in [t["node"] for t in body["trace"]]
    assert len(wh.executed_statements) == before  # type: ignore[union-attr]


async def test_question_widget_answers_live_with_llm_sql_and_logs_it(
    svc: Service, converse: ConverseServer, db_url: str
) -> None:
    converse.script(ToolCall(sql=TOP_MODELS_SQL, rationale="top models"))
    body = (await svc.data("top-claimed-models", refresh=True)).json()
    assert body["source"] == "databricks" and body["row_count"] > 0, body
    assert "main.claims.devices" in body["generated_sql"]
    req = converse.requests[-1]
    assert (
        "main.claims.claim_events" in req.system_text and "Which 5 device models" in req.user_text
    )
    rows = [r for r in await log_rows(db_url) if r["widget_id"] == "top-claimed-models"]
    assert rows and rows[-1]["safety_allowed"] is True and rows[-1]["model_id"] == MODEL_ID
    assert rows[-1]["generated_sql"].startswith("SELECT d.model") and rows[-1]["input_tokens"] > 0


async def test_approved_question_still_answers_when_bedrock_is_down(
    svc: Service, converse: ConverseServer
) -> None:
    converse.script(ToolCall(sql=TOP_MODELS_SQL))
    await svc.data("top-claimed-models", refresh=True)
    converse.script(EXPIRED_TOKEN, EXPIRED_TOKEN)
    n = len(converse.requests)
    body = (await svc.data("top-claimed-models", refresh=True)).json()
    assert body["source"] == "databricks" and body["row_count"] > 0
    assert len(converse.requests) == n  # the model was not asked again


async def _question_widget(svc: Service, wid: str, question: str) -> None:
    spec = {
        "title": wid,
        "kind": "table",
        "mock_data": [{"model": "mock", "claims": 1}],
        "data_intent": {
            "metric_id": "claims_insights",
            "time_range": "last_30d",
            "question": question,
        },
    }
    assert (await svc.client.put(f"/v1/widgets/{wid}", json=spec)).status_code in (200, 201)


@pytest.mark.parametrize(
    "reply, kind, needle",
    [
        (EXPIRED_TOKEN, "bedrock_unavailable", "ExpiredTokenException"),
        (THROTTLED, "bedrock_unavailable", "ThrottlingException"),
        (Text(), "llm_invalid_output", ""),
        (Slow(5.0), "llm_timeout", ""),
        (ToolCall(sql=DROP_SQL), "safety_violation", ""),
    ],
)
async def test_llm_failure_kinds_degrade_and_are_logged(
    svc: Service, converse: ConverseServer, db_url: str, reply: Reply, kind: str, needle: str
) -> None:
    wid = f"q-{kind}-{abs(hash(repr(reply))) % 10_000}"
    await _question_widget(svc, wid, f"Question for {wid}?")
    converse.script(reply)
    body = (await svc.data(wid)).json()
    assert body["source"] == kind and body["live_data_unavailable"] is True, body
    assert body["data"] == [{"model": "mock", "claims": 1}] and needle in body["error_detail"]
    rows = [r for r in await log_rows(db_url) if r["widget_id"] == wid]
    assert len(rows) == 1 and rows[0]["failure_kind"] == kind


async def test_drop_table_from_the_model_leaves_the_table_intact(
    svc: Service, converse: ConverseServer
) -> None:
    wh = svc.res.context.warehouse
    before = wh.table_checksums()  # type: ignore[union-attr]
    await _question_widget(svc, "q-drop", "Please drop the devices table")
    converse.script(ToolCall(sql=DROP_SQL))
    body = (await svc.data("q-drop")).json()
    assert body["source"] == "safety_violation" and body["executed"] is False
    assert wh.table_checksums() == before  # type: ignore[union-attr]
    assert not any("DROP" in s.upper() for s in wh.executed_statements)  # type: ignore[union-attr]


async def test_sql_generate_endpoint(svc: Service, converse: ConverseServer) -> None:
    r = await svc.client.post(
        "/v1/widgets/sql/generate",
        json={
            "metric_id": "claims_filed_count",
            "data_intent": {"metric_id": "claims_filed_count", "dimensions": ["region"]},
        },
    )
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (
        doc["generator"] == "compiled"
        and doc["dialect"] == "databricks"
        and doc["safety"] == {"allowed": True, "rule": None}
    )
    converse.script(ToolCall(sql=TOP_MODELS_SQL))
    doc = (
        await svc.client.post(
            "/v1/widgets/sql/generate",
            json={"metric_id": "claims_insights", "question": "top models by claims?"},
        )
    ).json()
    assert (
        doc["generator"] == "llm"
        and doc["model_id"] == MODEL_ID
        and "main.claims.devices" in doc["sql"]
    )
    converse.script(ToolCall(sql=DROP_SQL))
    r = await svc.client.post(
        "/v1/widgets/sql/generate", json={"metric_id": "claims_insights", "question": "drop it?"}
    )
    assert (
        r.status_code == 422
        and r.headers["content-type"] == "application/problem+json"
        and r.json()["rule"]
    )
    converse.script(EXPIRED_TOKEN)
    r = await svc.client.post(
        "/v1/widgets/sql/generate",
        json={"metric_id": "claims_insights", "question": "anything new?"},
    )
    assert r.status_code == 503 and "ExpiredTokenException" in r.json()["detail"]
    r = await svc.client.post("/v1/widgets/sql/generate", json={"metric_id": "active_issues_count"})
    assert r.status_code == 422
    r = await svc.client.post(
        "/v1/widgets/sql/generate",
        json={"metric_id": "claims_filed_count", "data_intent": {"metric_id": "avg_claim_amount"}},
    )
    assert r.status_code == 422 and "differ" in r.json()["detail"]
    r = await svc.client.post("/v1/widgets/sql/generate", json={"question": "no metric"})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"


# ------------------------------------------------------------------ no model configured


async def test_question_widget_without_a_model_is_bedrock_unconfigured(tmp_path: Path) -> None:
    url = create_database()
    try:
        async with running_service(database_url=url, data_dir=tmp_path) as s:
            body = (await s.data("top-claimed-models")).json()
            assert (
                body["source"] == "bedrock_unconfigured" and body["live_data_unavailable"] is True
            )
            assert "BEDROCK_MODEL_ID" in body["error_detail"]
            assert body["data"] == [{"model": "Acme X1", "claims": 120}]
            r = await s.client.post(
                "/v1/widgets/sql/generate", json={"metric_id": "claims_insights", "question": "q?"}
            )
            assert r.status_code == 503
    finally:
        drop_database(url)


# ------------------------------------------------------------------ Databricks through the real connector


async def test_databricks_warehouse_path_and_failure_kinds(
    sea: FakeSeaServer, tmp_path: Path
) -> None:
    url = create_database()
    try:
        async with running_service(
            database_url=url,
            data_dir=tmp_path,
            **sea_settings(sea),
            databricks_query_timeout_s=1.5,
        ) as s:
            body = (await s.data("claims-filed-by-region", refresh=True)).json()
            assert body["source"] == "databricks" and body["row_count"] > 0, body
            assert sea.statement_texts[-1] == body["generated_sql"]
            cases = [
                ("fail_message", "[TABLE_OR_VIEW_NOT_FOUND] boom", "databricks_error"),
                ("http_status", 401, "databricks_auth"),
                ("http_status", 503, "databricks_unavailable"),
                ("statement_delay_s", 5.0, "databricks_timeout"),
            ]
            for attr, value, kind in cases:
                sea.reset_failures()
                setattr(sea, attr, value)
                body = (await s.data("alert-mttr-by-severity", refresh=True)).json()
                assert body["source"] == kind, (kind, body)
                assert body["live_data_unavailable"] is True and body["data"] == [
                    {"severity": "critical", "value": 38.0}
                ]
            sea.reset_failures()
            await asyncio.sleep(0)
            body = (await s.data("alert-mttr-by-severity", refresh=True)).json()
            assert body["source"] == "databricks"
    finally:
        sea.reset_failures()
        drop_database(url)


async def test_restarted_instance_runs_an_approved_question_from_the_log_when_bedrock_is_down(
    converse: ConverseServer, tmp_path: Path
) -> None:
    url = create_database()
    settings: dict[str, Any] = {
        "database_url": url,
        "data_dir": tmp_path,
        "bedrock_model_id": MODEL_ID,
        "bedrock_endpoint_url": converse.url,
        "bedrock_timeout_s": 2.0,
    }
    try:
        async with running_service(**settings) as s:  # in-process cache: lost on restart
            converse.script(ToolCall(sql=TOP_MODELS_SQL))
            assert (await s.data("top-claimed-models")).json()["source"] == "databricks"
        async with running_service(**settings) as s:
            converse.script(EXPIRED_TOKEN)
            body = (await s.data("top-claimed-models", trace=True)).json()
            assert body["source"] == "databricks" and body["row_count"] > 0, body
            assert "reused_logged" in [t["outcome"] for t in body["trace"]]
    finally:
        drop_database(url)


async def test_concurrent_identical_misses_share_one_warehouse_query(svc: Service) -> None:
    wh = svc.res.context.warehouse
    spec = {
        "title": "stampede",
        "kind": "bar",
        "mock_data": [{"region": "x", "value": 0}],
        "data_intent": {
            "metric_id": "claims_filed_count",
            "dimensions": ["channel"],
            "time_range": "last_7d",
        },
    }
    assert (await svc.client.put("/v1/widgets/stampede", json=spec)).status_code in (200, 201)
    before = len(wh.executed_statements)  # type: ignore[union-attr]
    bodies = [r.json() for r in await asyncio.gather(*(svc.data("stampede") for _ in range(10)))]
    assert all(b["source"] == "databricks" and b["row_count"] > 0 for b in bodies)
    assert {b["resolved_at"] for b in bodies} == {bodies[0]["resolved_at"]}
    ran = wh.executed_statements[before:]  # type: ignore[union-attr]
    assert (
        len([s for s in ran if "claim_events" in s]) == 2
    )  # one query: its Databricks and DuckDB text


async def test_approved_llm_sql_is_reused_only_for_the_same_question_as_written(
    svc: Service, converse: ConverseServer
) -> None:
    # issue 9: "...model X1?" and "...model x1?" shared one approved SQL (model = 'X1')
    def widget(question: str) -> dict:
        return {
            "title": "case",
            "kind": "table",
            "mock_data": [{"model": "m", "claims": 0}],
            "data_intent": {"metric_id": "claims_insights", "question": question},
        }

    sql = "SELECT d.model, count(*) AS claims FROM main.claims.devices d WHERE d.model = '{}' GROUP BY d.model LIMIT 5"
    upper, lower, spaced = (
        "How many claims for model Acme X1?",
        "how many claims for model acme x1?",
        "  How many claims   for model Acme X1? ",
    )
    for wid, q in (("case-upper", upper), ("case-lower", lower), ("case-spaced", spaced)):
        assert (await svc.client.put(f"/v1/widgets/{wid}", json=widget(q))).status_code in (
            200,
            201,
        )
    converse.script(ToolCall(sql=sql.format("Acme X1")), ToolCall(sql=sql.format("acme x1")))
    first = (await svc.data("case-upper", trace=True)).json()
    second = (await svc.data("case-lower", trace=True)).json()
    assert first["source"] == second["source"] == "databricks", (first, second)
    assert len(converse.requests) == 2  # a second model call for the other letter case
    assert "'Acme X1'" in first["generated_sql"] and "'acme x1'" in second["generated_sql"]
    third = (await svc.data("case-spaced", trace=True)).json()
    assert len(converse.requests) == 2  # whitespace alone is normalised: reused
    assert "reused_approved" in [t["outcome"] for t in third["trace"]]
    assert third["generated_sql"] == first["generated_sql"]


async def test_put_rejects_filter_values_that_do_not_fit_the_column_type(svc: Service) -> None:
    """A filter value must fit its column's type from the warehouse catalog: otherwise the
    widget errors, or not, depending on the data and the engine."""

    def spec(filters: Sequence[Mapping[str, object]]) -> dict[str, object]:
        return {
            "title": "typed",
            "kind": "kpi",
            "data_intent": {"metric_id": "claims_filed_count", "filters": filters},
            "mock_data": [{"value": 1}],
        }

    for bad, named in (
        ({"column": "region", "op": "in", "value": ["west", 5]}, "region"),
        ({"column": "channel", "op": "<=", "value": 2.5}, "channel"),
        ({"column": "region", "op": "=", "value": True}, "region"),
    ):
        r = await svc.client.put("/v1/widgets/typed-filter", json=spec([bad]))
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert f"filter {named}" in r.json()["detail"] and "does not fit" in r.json()["detail"]
    r = await svc.client.put(
        "/v1/widgets/typed-filter", json=spec([{"column": "region", "op": "in", "value": ["west"]}])
    )
    assert r.status_code in (200, 201), r.text
    assert (await svc.client.delete("/v1/widgets/typed-filter")).status_code in (200, 204)


async def test_guardrail_intervention_degrades_as_llm_refused_and_is_logged(
    db_url: str, converse: ConverseServer, tmp_path: Path
) -> None:
    """With BEDROCK_GUARDRAIL_ID set the question is guarded; an intervention is a flagged
    mock (source llm_refused), a 422 on sql/generate, and a sql_generation_log row."""
    async with running_service(
        database_url=db_url,
        data_dir=tmp_path,
        bedrock_model_id=MODEL_ID,
        bedrock_endpoint_url=converse.url,
        bedrock_timeout_s=2.0,
        bedrock_guardrail_id="gr-test",
        bedrock_guardrail_version="1",
    ) as guarded:
        converse.script(Intervened(text="Sorry, that topic is blocked."))
        body = (await guarded.data("top-claimed-models", refresh=True)).json()
        assert body["live_data_unavailable"] is True and body["source"] == "llm_refused", body
        assert "guardrail intervened" in body["error_detail"]
        req = converse.requests[-1]
        assert req.guardrail_config["guardrailIdentifier"] == "gr-test"
        rows = [r for r in await log_rows(db_url) if r["widget_id"] == "top-claimed-models"]
        assert rows[-1]["failure_kind"] == "llm_refused" and rows[-1]["generated_sql"] is None
        converse.script(Intervened())
        r = await guarded.client.post(
            "/v1/widgets/sql/generate",
            json={"metric_id": "claims_insights", "question": "something blocked"},
        )
        assert r.status_code == 422 and r.json()["kind"] == "llm_refused", r.text
