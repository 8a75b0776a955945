"""Verified answers (issue 23) over the HTTP API on real PostgreSQL and Redis, the embedded
warehouse and the local Converse API server, with JWT principals:

- an owner (scope `answers:verify`) verifies a question's answer; a later resolution of the
  same question is answered from it without the model (the fake's calls counted), says
  `trust: verified` with who and when, takes the way `verified` (trace, generation log),
  and the write is in the audit chain;
- a missing scope is a 403, another tenant's widget a 404, another tenant's identical
  question is not verified; every bad input is a problem;
- a verified SQL answer runs with each caller's row filters;
- a catalog change that breaks a verified intent flags it for re-verification: it is not
  served (the usual way answers) until verified again."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from adapters.identity import mint_token
from fakes.bedrock_converse import NO_METRIC, ConverseServer, ToolCall
from tests.support.clocks import until
from tests.support.servers import (
    Service,
)

SECRET = "verified-answers-secret-0123456789abcdef"
pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.service(
        converse=True, auth_jwt_secret=SECRET, auth_audience="wdr", llm_rate_limit="1000/minute"
    ),
]
READ = "data:read widgets:read widgets:write audit:read"
OWNER_SCOPES = f"{READ} answers:verify"
BY_REGION = {"metric_id": "claims_filed_count", "dimensions": ["region"], "time_range": "last_30d"}
BY_CHANNEL = {"metric_id": "claims_filed_count", "dimensions": ["channel"]}
REGION_SQL = "SELECT region, count(*) AS n FROM main.claims.claim_events GROUP BY region"
MODEL_SQL = "SELECT channel, count(*) AS n FROM main.claims.claim_events GROUP BY channel"
# a principal without the `regions` claim sees no rows of claim_events (fail closed)
ALL_REGIONS = ["northeast", "southeast", "midwest", "southwest", "west"]


def token(
    tenant: str = "acme", scopes: str = OWNER_SCOPES, subject: str = "owner@acme", **claims: Any
) -> dict[str, str]:
    claims = {"regions": ALL_REGIONS} | claims
    tok = mint_token(
        SECRET, tenant=tenant, scopes=scopes, subject=subject, claims=claims, audience="wdr"
    )
    return {"Authorization": f"Bearer {tok}"}


OWNER = token()
READER = token(scopes=READ, subject="reader@acme")
OTHER = token(tenant="globex", subject="owner@globex")


@pytest.fixture(autouse=True)
def _reset(converse: ConverseServer) -> None:
    converse.reset()


async def ask(svc: Service, wid: str, question: str, headers: dict[str, str] = OWNER) -> None:
    spec = {
        "title": f"asked {wid}",
        "kind": "table",
        "data_intent": {"metric_id": "claims_insights", "question": question, "limit": 50},
        "mock_data": [{"region": "mock", "n": 0}],
    }
    r = await svc.client.put(f"/v1/widgets/{wid}", json=spec, headers=headers)
    assert r.status_code in (200, 201), r.text


async def verify(
    svc: Service, wid: str, body: dict[str, Any], headers: dict[str, str] = OWNER
) -> Any:
    return await svc.client.put(f"/v1/widgets/{wid}/verified-answer", json=body, headers=headers)


async def resolve(svc: Service, wid: str, headers: dict[str, str] = OWNER) -> dict[str, Any]:
    r = await svc.data(wid, refresh=True, trace=True, headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def sql_rows(svc: Service, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    url = svc.settings.database_url
    assert url is not None
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await (await conn.execute(sql, args)).fetchall()


async def until_flagged(svc: Service, question: str, timeout_s: float = 30.0) -> None:
    """Wait (polling PostgreSQL) until the verified answer to `question` is flagged."""
    sql = "SELECT 1 FROM verified_answers WHERE question = %s AND needs_reverification"

    async def flagged() -> bool:
        return bool(await sql_rows(svc, sql, question))

    await until(flagged, timeout_s=timeout_s, every_s=0.05)


def way(body: dict[str, Any]) -> str:
    return next(t["outcome"] for t in body["trace"] if t["node"] == "sql_generate")


async def test_a_verified_answer_is_reused_without_the_model_and_audited(
    svc: Service, converse: ConverseServer
) -> None:
    await ask(svc, "q-region", "How many claims were filed in each region?")
    r = await verify(svc, "q-region", {"intent": BY_REGION})
    assert r.status_code == 201, r.text
    put = r.json()
    assert put["verified_by"] == "owner@acme" and put["needs_reverification"] is False
    assert put["intent"]["metric_id"] == "claims_filed_count" and put["sql"] is None

    body = await resolve(svc, "q-region")
    assert body["trust"] == "verified" and body["source"] == "databricks", body
    assert body["verification"] == {"verified_by": "owner@acme", "verified_at": put["verified_at"]}
    assert way(body) == "verified" and body["row_count"] > 0
    assert converse.requests == [] and converse.grounding_requests == []  # no model call
    again = await resolve(svc, "q-region")
    assert again["trust"] == "verified" and converse.grounding_requests == []
    # cached: the trust and the verification come with the cached answer
    cached = (await svc.data("q-region", headers=OWNER)).json()
    assert cached["cache_hit"] is True and cached["verification"] == body["verification"]

    logged = await sql_rows(
        svc,
        "SELECT way, grounded_intent, safety_allowed, model_id FROM sql_generation_log"
        " WHERE widget_id = 'q-region' ORDER BY id",
    )
    assert [(w, i["dimensions"], ok, m) for w, i, ok, m in logged] == [
        ("verified", ["region"], True, None)
    ] * 2
    # audited: answer.verify, and a second verify chains on the first
    r2 = await verify(svc, "q-region", {"sql": REGION_SQL})
    assert r2.status_code == 200 and r2.json()["sql"] == REGION_SQL
    audit = (await svc.client.get("/v1/audit", headers=OWNER)).json()["entries"]
    mine = [e for e in audit if e["action"].startswith("answer.")]
    assert [e["action"] for e in mine] == ["answer.verify", "answer.verify"]
    assert all(e["widget_id"] == "q-region" and e["subject"] == "owner@acme" for e in mine)
    assert mine[1]["before_hash"] is None and mine[0]["before_hash"] == mine[1]["after_hash"]
    # GET shows it; DELETE withdraws it (audited) and the usual way answers again
    got = (await svc.client.get("/v1/widgets/q-region/verified-answer", headers=READER)).json()
    assert got["sql"] == REGION_SQL and got["needs_reverification"] is False
    assert (
        await svc.client.delete("/v1/widgets/q-region/verified-answer", headers=OWNER)
    ).status_code == 204
    audit = (await svc.client.get("/v1/audit", headers=OWNER)).json()["entries"]
    assert audit[0]["action"] == "answer.unverify" and audit[0]["after_hash"] is None
    assert audit[0]["before_hash"] == mine[0]["after_hash"]
    converse.script_intents(NO_METRIC)
    converse.script(ToolCall(sql=MODEL_SQL))
    usual = await resolve(svc, "q-region")
    assert usual["trust"] == "model_written_unverified" and usual["verification"] is None
    assert len(converse.requests) == 1
    gone = await svc.client.get("/v1/widgets/q-region/verified-answer", headers=OWNER)
    assert gone.status_code == 404 and gone.headers["content-type"] == "application/problem+json"


async def test_scope_tenants_and_bad_inputs_are_problems(
    svc: Service, converse: ConverseServer
) -> None:
    await ask(svc, "q-scoped", "Claims filed per region, please?")
    path = "/v1/widgets/q-scoped/verified-answer"
    # no answers:verify scope: 403 (PUT and DELETE); GET needs widgets:read only
    for method in ("put", "delete"):
        kw: dict[str, Any] = {"json": {"intent": BY_REGION}} if method == "put" else {}
        r = await getattr(svc.client, method)(path, headers=READER, **kw)
        assert r.status_code == 403 and "answers:verify" in r.json()["detail"], r.text
        assert r.headers["content-type"] == "application/problem+json"
    # another tenant's widget is not there (404), whatever its scopes
    r = await verify(svc, "q-scoped", {"intent": BY_REGION}, headers=OTHER)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    assert (await verify(svc, "no-such-widget", {"intent": BY_REGION})).status_code == 404
    bad: list[tuple[dict[str, Any], int, str]] = [
        ({"intent": BY_REGION, "sql": REGION_SQL}, 422, "exactly one"),
        ({}, 422, "exactly one"),
        ({"sql": "DELETE FROM main.claims.claim_events"}, 422, "urn:problem:safety-violation"),
        ({"sql": "SELECT * FROM main.secret.salaries"}, 422, "urn:problem:safety-violation"),
        ({"sql": "SELECT no_such_column FROM main.claims.claim_events"}, 422, "safety"),
        ({"intent": {"metric_id": "claims_filed_count", "dimensions": ["model"]}}, 422, "model"),
        ({"intent": {"metric_id": "active_issues_count"}}, 422, "does not fit"),
    ]
    for payload, status, says in bad:
        r = await verify(svc, "q-scoped", payload)
        assert r.status_code == status, (payload, r.text)
        assert r.headers["content-type"] == "application/problem+json", payload
        assert says in r.text, (payload, r.text)
    # a widget without a question has no answer to verify
    plain = {
        "title": "plain",
        "kind": "bar",
        "data_intent": {"metric_id": "claims_filed_count", "dimensions": ["region"]},
        "mock_data": [{"region": "mock", "value": 1}],
    }
    assert (await svc.client.put("/v1/widgets/plain", json=plain, headers=OWNER)).is_success
    r = await verify(svc, "plain", {"intent": BY_REGION})
    assert r.status_code == 422 and r.json()["type"] == "urn:problem:no-question", r.text
    # acme verifies; globex's widget asking the same question is not verified
    assert (await verify(svc, "q-scoped", {"intent": BY_REGION})).status_code == 201
    await ask(svc, "q-scoped", "Claims filed per region, please?", headers=OTHER)
    converse.script_intents(NO_METRIC)
    converse.script(ToolCall(sql=MODEL_SQL))
    theirs = await resolve(svc, "q-scoped", headers=OTHER)
    assert theirs["trust"] == "model_written_unverified" and len(converse.requests) == 1
    ours = await resolve(svc, "q-scoped")
    assert ours["trust"] == "verified" and len(converse.requests) == 1
    nothing = await svc.client.get("/v1/widgets/q-scoped/verified-answer", headers=OTHER)
    assert nothing.status_code == 404


async def test_a_verified_sql_answer_gets_each_callers_row_filters(
    svc: Service, converse: ConverseServer
) -> None:
    await ask(svc, "q-sql", "Claims events per region (verified SQL)?")
    assert (await verify(svc, "q-sql", {"sql": REGION_SQL})).status_code == 201
    rows: dict[str, set[str]] = {}
    for region in ("west", "northeast"):
        who = token(scopes=READ, subject=f"{region}@acme", regions=[region])
        body = await resolve(svc, "q-sql", headers=who)
        assert body["trust"] == "verified" and way(body) == "verified", body
        rows[region] = {r["region"] for r in body["data"]}
    assert rows == {"west": {"west"}, "northeast": {"northeast"}}
    everyone = await resolve(svc, "q-sql")
    assert {r["region"] for r in everyone["data"]} == set(ALL_REGIONS)
    assert converse.requests == [] and converse.grounding_requests == []


async def test_a_catalog_change_flags_a_verified_answer_for_reverification(
    svc: Service, converse: ConverseServer
) -> None:
    await ask(svc, "q-channel", "How many claims were filed per channel?")
    assert (await verify(svc, "q-channel", {"intent": BY_CHANNEL})).status_code == 201
    assert (await resolve(svc, "q-channel"))["trust"] == "verified"

    def dimensions() -> list[str]:
        metric = svc.res.registry.metric("claims_filed_count")
        assert metric is not None
        return list(metric.definition.dimensions)

    update = (
        "UPDATE metrics_catalog SET definition = jsonb_set(definition, '{dimensions}', %s::jsonb)"
        " WHERE name = 'claims_filed_count'"
    )
    await sql_rows(svc, update + " RETURNING name", '["region"]')  # channel removed
    try:
        await until(lambda: "channel" not in dimensions())
        # the registry's reload checks every verified answer against the new catalog
        await until_flagged(svc, "How many claims were filed per channel?")
        got = (await svc.client.get("/v1/widgets/q-channel/verified-answer", headers=OWNER)).json()
        assert got["needs_reverification"] is True and "channel" in got["reverification_reason"]
        converse.script_intents(NO_METRIC)
        converse.script(ToolCall(sql=MODEL_SQL))
        body = await resolve(svc, "q-channel")
        assert body["trust"] == "model_written_unverified" and body["verification"] is None
        assert way(body) == "llm" and len(converse.requests) == 1
        ((flagged, reason),) = await sql_rows(
            svc,
            "SELECT needs_reverification, reverification_reason FROM verified_answers"
            " WHERE question = 'How many claims were filed per channel?'",
        )
        assert flagged is True and "channel" in reason
    finally:
        await sql_rows(svc, update + " RETURNING name", '["region", "channel"]')
        await until(lambda: "channel" in dimensions())
    # the catalog fits again, but the flag holds until an owner verifies again
    converse.script_intents(NO_METRIC)
    converse.script(ToolCall(sql=MODEL_SQL))
    assert (await resolve(svc, "q-channel"))["trust"] == "model_written_unverified"
    again = await verify(svc, "q-channel", {"intent": BY_CHANNEL})
    assert again.status_code == 200 and again.json()["needs_reverification"] is False
    assert (await resolve(svc, "q-channel"))["trust"] == "verified"
