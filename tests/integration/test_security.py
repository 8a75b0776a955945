"""Integration: identity, tenants and row-level security over HTTP, on real PostgreSQL and
Redis, embedded DuckDB and the local Bedrock Converse server. Tokens are minted here
(HS256 with the service's secret)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from adapters.identity import mint_token
from fakes.bedrock_converse import MODEL_ID, ConverseServer, ToolCall
from tests.support.servers import (
    Service,
    running_service,
)

SECRET = "integration-secret-0123456789abcdef"
pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.service(
        converse=True, auth_jwt_secret=SECRET, auth_audience="wdr", llm_rate_limit="1000/minute"
    ),
]
REGIONS = ["midwest", "northeast", "southeast", "southwest", "west"]
ALL_SCOPES = "data:read widgets:read widgets:write metrics:read sql:generate audit:read"


def token(
    tenant: str = "acme",
    scope: str = ALL_SCOPES,
    regions: list[Any] | None = None,
    **kw: Any,
) -> dict[str, str]:
    claims = dict(kw.pop("claims", {}))
    if regions is not None:
        claims["regions"] = regions
    tok = mint_token(SECRET, tenant=tenant, scopes=scope, claims=claims, audience="wdr", **kw)
    return {"Authorization": f"Bearer {tok}"}


@pytest.fixture(autouse=True)
def _reset(converse: ConverseServer) -> None:
    converse.reset()


WIDGET = {
    "title": "Claims filed by region",
    "kind": "bar",
    "data_intent": {
        "metric_id": "claims_filed_count",
        "dimensions": ["region"],
        "time_range": "last_30d",
    },
    "mock_data": [{"region": "west", "value": 1}],
}


async def put(
    svc: Service, wid: str, spec: dict[str, Any], headers: dict[str, str]
) -> httpx.Response:
    return await svc.client.put(f"/v1/widgets/{wid}", json=spec, headers=headers)


def regions_of(body: dict[str, Any]) -> set[str]:
    return {r["region"] for r in body["data"]}


# ------------------------------------------------------------------ credentials


ROUTES: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("POST", "/v1/widgets/open-issues-kpi/data", None, "data:read"),
    ("POST", "/v1/widgets/data", {"widget_ids": ["open-issues-kpi"]}, "data:read"),
    (
        "POST",
        "/v1/widgets/sql/generate",
        {"metric_id": "claims_filed_count", "data_intent": {"metric_id": "claims_filed_count"}},
        "sql:generate",
    ),
    ("GET", "/v1/widgets", None, "widgets:read"),
    ("GET", "/v1/widgets/open-issues-kpi", None, "widgets:read"),
    ("PUT", "/v1/widgets/scope-probe", WIDGET, "widgets:write"),
    ("DELETE", "/v1/widgets/scope-probe-missing", None, "widgets:write"),
    ("GET", "/v1/metrics", None, "metrics:read"),
    ("GET", "/v1/audit", None, "audit:read"),
    ("GET", "/openapi.json", None, "data:read"),
    ("GET", "/docs", None, "data:read"),
]


def _bad_credentials() -> dict[str, tuple[dict[str, str], str]]:
    now = int(time.time())
    good = token(tenant="default")["Authorization"].split(" ", 1)[1]
    head, body, _sig = good.split(".")
    return {
        "missing": ({}, "invalid_request"),
        "basic_scheme": ({"Authorization": "Basic dXNlcjpwdw=="}, "invalid_request"),
        "empty_bearer": ({"Authorization": "Bearer "}, "invalid_request"),
        "garbage": ({"Authorization": "Bearer not.a.jwt"}, "invalid_token"),
        "bad_signature": ({"Authorization": f"Bearer {head}.{body}.AAAA"}, "invalid_token"),
        "alg_none": (
            {"Authorization": "Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + body + "."},
            "invalid_token",
        ),
        "expired": (token(tenant="default", ttl_s=-120), "invalid_token"),
        # far ahead: the cases are built at collection time, long before a full run gets here
        "not_yet_valid": (token(tenant="default", claims={"nbf": now + 86_400}), "invalid_token"),
        "wrong_audience": (token(tenant="default", claims={"aud": "other"}), "invalid_token"),
        "other_secret": (
            {
                "Authorization": "Bearer "
                + mint_token("x" * 40, tenant="default", scopes=ALL_SCOPES, audience="wdr")
            },
            "invalid_token",
        ),
        "unknown_api_key": ({"X-API-Key": "wdr_0123456789abcdef_" + "A" * 43}, "invalid_token"),
        "malformed_api_key": ({"X-API-Key": "letmein"}, "invalid_token"),
        "both": ({**token(tenant="default"), "X-API-Key": "x"}, "invalid_request"),
    }


BAD = _bad_credentials()


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize(("method", "path", "body", "scope"), ROUTES)
async def test_bad_credentials_get_401_problem_on_every_route(
    svc: Service, case: str, method: str, path: str, body: Any, scope: str
) -> None:
    headers, error = BAD[case]
    r = await svc.client.request(method, path, json=body, headers=headers)
    assert r.status_code == 401, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert f'error="{error}"' in r.headers["www-authenticate"]
    assert r.headers["www-authenticate"].startswith("Bearer ")
    assert "open-issues-kpi" not in r.json()["detail"]  # no hint of which widgets exist


@pytest.mark.parametrize(("method", "path", "body", "scope"), ROUTES)
async def test_each_route_needs_its_scope(
    svc: Service, method: str, path: str, body: Any, scope: str
) -> None:
    others = " ".join(s for s in ALL_SCOPES.split() if s != scope)
    r = await svc.client.request(method, path, json=body, headers=token("default", others))
    assert r.status_code == 403, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert f'scope="{scope}"' in r.headers["www-authenticate"]
    ok = await svc.client.request(method, path, json=body, headers=token("default", scope))
    assert ok.status_code not in (401, 403), ok.text


async def test_health_and_readiness_stay_open_and_say_the_auth_mode(svc: Service) -> None:
    assert (await svc.client.get("/healthz")).status_code == 200
    ready = await svc.client.get("/readyz")
    assert ready.status_code == 200 and set(ready.json()) == {"status"}  # open: status only
    ready = await svc.client.get("/readyz", headers=token("default", "ops:read"))
    assert ready.json()["components"]["auth"]["mode"] == "jwt"


async def test_data_read_token_resolves_but_cannot_put(svc: Service) -> None:
    reader = token("default", "data:read")
    r = await svc.data("open-issues-kpi", headers=reader)
    assert r.status_code == 200 and r.json()["source"] == "postgres"
    assert (await put(svc, "open-issues-kpi", WIDGET, reader)).status_code == 403


async def test_api_key_is_a_principal(svc: Service) -> None:
    from adapters.identity import ApiKeyStore

    key = await ApiKeyStore(svc.res.gateway.pool).create(
        tenant="default", scopes=["data:read"], claims={}
    )
    r = await svc.data("open-issues-kpi", headers={"X-API-Key": key})
    assert r.status_code == 200
    r = await svc.client.get("/v1/widgets", headers={"X-API-Key": key})
    assert r.status_code == 403


# ------------------------------------------------------------------ tenants


async def test_another_tenants_widget_is_404_on_every_route(svc: Service) -> None:
    acme, globex = token("acme", regions=REGIONS), token("globex", regions=REGIONS)
    assert (await put(svc, "acme-private", WIDGET, acme)).status_code == 201
    live = await svc.data("acme-private", headers=acme)
    assert live.status_code == 200 and live.json()["source"] == "databricks"

    missing = await svc.data("never-registered", headers=globex)
    other = await svc.data("acme-private", headers=globex)
    assert other.status_code == missing.status_code == 404
    assert other.json()["title"] == missing.json()["title"]
    assert (await svc.client.get("/v1/widgets/acme-private", headers=globex)).status_code == 404
    assert (await svc.client.delete("/v1/widgets/acme-private", headers=globex)).status_code == 404
    batch = await svc.client.post(
        "/v1/widgets/data", json={"widget_ids": ["acme-private"]}, headers=globex
    )
    assert batch.json() == {"results": [], "not_found": ["acme-private"]}
    listing = (await svc.client.get("/v1/widgets", headers=globex)).json()
    assert "acme-private" not in {w["id"] for w in listing["widgets"]}
    # the demo widgets belong to `default`: another tenant does not see them either
    assert (await svc.data("open-issues-kpi", headers=globex)).status_code == 404

    # ids are unique per tenant: globex gets its own widget of the same id
    other_spec = WIDGET | {"title": "Globex's own"}
    assert (await put(svc, "acme-private", other_spec, globex)).status_code == 201
    mine = (await svc.client.get("/v1/widgets/acme-private", headers=acme)).json()
    theirs = (await svc.client.get("/v1/widgets/acme-private", headers=globex)).json()
    assert mine["spec"]["title"] == "Claims filed by region"
    assert theirs["spec"]["title"] == "Globex's own"
    # neither sees the other's cached rows: globex's first resolution is a miss
    first = (await svc.data("acme-private", headers=globex)).json()
    assert first["cache_hit"] is False
    assert (await svc.client.delete("/v1/widgets/acme-private", headers=globex)).status_code == 204
    assert (await svc.client.get("/v1/widgets/acme-private", headers=acme)).status_code == 200


async def test_writes_are_audited_in_the_same_transaction(svc: Service, db_url: str) -> None:
    h = token("audited", subject="alice", regions=REGIONS)
    assert (await put(svc, "w-audit", WIDGET, h)).status_code == 201
    assert (await put(svc, "w-audit", WIDGET | {"title": "v2"}, h)).status_code == 200
    assert (await svc.client.delete("/v1/widgets/w-audit", headers=h)).status_code == 204
    log = (await svc.client.get("/v1/audit", headers=h)).json()["entries"]
    assert [e["action"] for e in log] == ["widget.delete", "widget.replace", "widget.create"]
    assert {e["subject"] for e in log} == {"alice"} and {e["tenant"] for e in log} == {"audited"}
    delete, replace, create = log
    assert create["before_hash"] is None and create["after_hash"]
    assert replace["before_hash"] == create["after_hash"] != replace["after_hash"]
    assert delete["before_hash"] == replace["after_hash"] and delete["after_hash"] is None
    # another tenant's audit log does not show these
    other = (await svc.client.get("/v1/audit", headers=token("acme"))).json()["entries"]
    assert all(e["tenant"] == "acme" for e in other)
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        cur = await conn.execute("SELECT count(*) FROM audit_log WHERE tenant = 'audited'")
        assert (await cur.fetchone()) == (3,)


# ------------------------------------------------------------------ row filters


async def test_compiled_warehouse_rows_are_filtered_and_regions_add_up(svc: Service) -> None:
    # one region at a time, back to back on the same widget: different, correct rows
    west = (
        await svc.data("claims-filed-by-region", headers=token("default", regions=["west"]))
    ).json()
    ne = (
        await svc.data("claims-filed-by-region", headers=token("default", regions=["northeast"]))
    ).json()
    assert west["source"] == ne["source"] == "databricks"
    assert regions_of(west) == {"west"} and regions_of(ne) == {"northeast"}
    assert west["cache_hit"] is False and ne["cache_hit"] is False
    assert "IN ('west')" in west["generated_sql"]
    again = (
        await svc.data("claims-filed-by-region", headers=token("default", regions=["west"]))
    ).json()
    assert again["cache_hit"] is True and again["data"] == west["data"]

    total = {
        "title": "All claims",
        "kind": "kpi",
        "data_intent": {"metric_id": "claims_filed_count", "time_range": "last_30d"},
        "mock_data": [{"value": 0}],
    }
    assert (await put(svc, "claims-total", total, token("default"))).status_code in (200, 201)
    everything = (await svc.data("claims-total", headers=token("default", regions=REGIONS))).json()
    parts = [
        (await svc.data("claims-total", headers=token("default", regions=[r]))).json()["data"][0][
            "value"
        ]
        for r in REGIONS
    ]
    assert everything["data"][0]["value"] == sum(parts) > 0
    assert all(0 < p < everything["data"][0]["value"] for p in parts)


async def test_claim_values_are_type_normalized_for_the_cache(svc: Service) -> None:
    a = (
        await svc.data("claims-filed-by-region", headers=token("default", regions=["west", "west"]))
    ).json()
    b = (
        await svc.data("claims-filed-by-region", headers=token("default", regions=["west"]))
    ).json()
    assert b["cache_hit"] is True and a["data"] == b["data"]


async def test_no_claim_sees_no_rows(svc: Service) -> None:
    body = (await svc.data("claims-filed-by-region", headers=token("default"))).json()
    assert body["source"] == "databricks" and body["data"] == []
    alerts = (await svc.data("critical-alerts-by-service", headers=token("default"))).json()
    assert alerts["data"] == [] and "WHERE FALSE" in alerts["generated_sql"]


async def test_unfiltered_tables_are_untouched(svc: Service) -> None:
    body = (await svc.data("devices-by-manufacturer", headers=token("default"))).json()
    assert body["source"] == "databricks" and body["row_count"] > 0


async def test_dry_run_shows_the_filtered_sql(svc: Service) -> None:
    body = (
        await svc.data(
            "claims-filed-by-region", headers=token("default", regions=["midwest"]), dry_run=True
        )
    ).json()
    assert body["dry_run"] is True and "IN ('midwest')" in body["generated_sql"]
    r = await svc.client.post(
        "/v1/widgets/sql/generate",
        json={"metric_id": "claims_filed_count"},
        headers=token("default", regions=["southwest"]),
    )
    assert r.status_code == 200 and "IN ('southwest')" in r.json()["sql"]


async def test_postgres_series_are_filtered_as_bound_parameters(svc: Service) -> None:
    spec = {
        "title": "In progress by region",
        "kind": "bar",
        "data_intent": {
            "metric_id": "claims_in_progress_count",
            "dimensions": ["region"],
            "time_range": "last_24h",
        },
        "mock_data": [{"region": "west", "value": 1}],
    }
    total = {
        "title": "In progress",
        "kind": "kpi",
        "data_intent": {"metric_id": "claims_in_progress_count", "time_range": "last_24h"},
        "mock_data": [{"value": 1}],
    }
    admin = token("default")
    assert (await put(svc, "in-progress-by-region", spec, admin)).status_code in (200, 201)
    assert (await put(svc, "in-progress-total", total, admin)).status_code in (200, 201)
    west = (
        await svc.data("in-progress-by-region", headers=token("default", regions=["west"]))
    ).json()
    ne = (
        await svc.data("in-progress-by-region", headers=token("default", regions=["northeast"]))
    ).json()
    assert west["source"] == "postgres" and regions_of(west) == {"west"}
    assert regions_of(ne) == {"northeast"}
    assert "ANY(%(rls)s)" in west["generated_sql"] and "west" not in west["generated_sql"]
    whole = (await svc.data("in-progress-total", headers=token("default", regions=REGIONS))).json()
    parts = [
        (await svc.data("in-progress-total", headers=token("default", regions=[r]))).json()["data"][
            0
        ]["value"]
        for r in REGIONS
    ]
    assert whole["data"][0]["value"] == pytest.approx(sum(parts)) and sum(parts) > 0
    nothing = (await svc.data("in-progress-total", headers=token("default"))).json()
    assert nothing["source"] == "postgres" and nothing["data"] in ([], [{"value": None}])
    # a metric the policy does not filter is unaffected
    issues = (await svc.data("open-issues-kpi", headers=token("default"))).json()
    assert issues["row_count"] == 1 and issues["data"][0]["value"]


# ------------------------------------------------------------------ LLM read-around


READ_AROUND = {
    "plain": "SELECT region, count(*) AS n FROM main.claims.claim_events GROUP BY region",
    "alias": "SELECT e.region, count(*) AS n FROM main.claims.claim_events AS e GROUP BY e.region",
    "cte_named_like_table": (
        "WITH claim_events AS (SELECT * FROM main.claims.claim_events) "
        "SELECT region, count(*) AS n FROM claim_events GROUP BY region"
    ),
    "subquery": (
        "SELECT region, count(*) AS n FROM (SELECT region FROM main.claims.claim_events) s "
        "GROUP BY region"
    ),
    "union": (
        "SELECT region, 1 AS n FROM main.claims.claim_events "
        "UNION ALL SELECT region, 2 AS n FROM main.ops.alerts"
    ),
    "self_join": (
        "SELECT b.region, count(*) AS n FROM main.claims.claim_events a JOIN "
        "main.claims.claim_events b ON a.claim_id = b.claim_id GROUP BY b.region"
    ),
    "quoting_and_case": "SELECT region, count(*) AS n FROM `MAIN`.Claims.`Claim_Events` GROUP BY region",
    "or_true": (
        "SELECT region, count(*) AS n FROM main.claims.claim_events "
        "WHERE region = 'west' OR 1 = 1 GROUP BY region"
    ),
    "join_through_devices": (
        "SELECT e.region, count(*) AS n FROM main.claims.devices d JOIN main.claims.claim_events e "
        "ON d.device_id = e.device_id GROUP BY e.region"
    ),
    "scalar_subquery": (
        "SELECT region, (SELECT count(*) FROM main.claims.claim_events) AS n "
        "FROM main.ops.alerts GROUP BY region"
    ),
}


@pytest.mark.parametrize("trick", sorted(READ_AROUND))
async def test_llm_sql_never_reads_around_the_filter(
    svc: Service, converse: ConverseServer, trick: str
) -> None:
    h = token("llm-co", regions=["west"])
    spec = {
        "title": f"trick {trick}",
        "kind": "table",
        "data_intent": {
            "metric_id": "claims_insights",
            "question": f"Claims per region ({trick})?",
        },
        "mock_data": [{"region": "x", "n": 0}],
    }
    assert (await put(svc, f"trick-{trick}", spec, h)).status_code == 201
    converse.script(ToolCall(sql=READ_AROUND[trick]))
    body = (await svc.data(f"trick-{trick}", headers=h)).json()
    assert body["source"] == "databricks", body
    assert body["row_count"] > 0
    assert regions_of(body) == {"west"}, body["generated_sql"]
    if trick == "scalar_subquery":  # the count read through the subquery is west's only
        west_total = (
            await svc.data(f"trick-{trick}", headers=token("llm-co", regions=["west", "east-none"]))
        ).json()
        assert west_total["data"][0]["n"] > 0


async def test_approved_sql_is_reused_within_a_tenant_but_filtered_per_caller(
    svc: Service, converse: ConverseServer
) -> None:
    spec = {
        "title": "reuse",
        "kind": "table",
        "data_intent": {"metric_id": "claims_insights", "question": "Claims per region, reuse?"},
        "mock_data": [{"region": "x", "n": 0}],
    }
    for tenant in ("reuse-a", "reuse-b"):
        assert (await put(svc, "reuse", spec, token(tenant))).status_code == 201
    converse.script(ToolCall(sql=READ_AROUND["plain"]))
    west = (await svc.data("reuse", headers=token("reuse-a", regions=["west"]))).json()
    assert len(converse.requests) == 1 and regions_of(west) == {"west"}
    south = (await svc.data("reuse", headers=token("reuse-a", regions=["southeast"]))).json()
    assert len(converse.requests) == 1  # approved SQL reused within the tenant ...
    assert regions_of(south) == {"southeast"}  # ... with this caller's filter
    converse.script(ToolCall(sql=READ_AROUND["alias"]))
    other = (await svc.data("reuse", headers=token("reuse-b", regions=["west"]))).json()
    assert len(converse.requests) == 2  # never across tenants
    assert regions_of(other) == {"west"}


async def test_generation_log_carries_the_tenant(
    svc: Service, converse: ConverseServer, db_url: str
) -> None:
    converse.script(ToolCall(sql=READ_AROUND["plain"]))
    r = await svc.client.post(
        "/v1/widgets/sql/generate",
        json={"metric_id": "claims_insights", "question": "Claims per region for the log?"},
        headers=token("logged-co", regions=["west"]),
    )
    assert r.status_code == 200 and "IN ('west')" in r.json()["sql"]
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        cur = await conn.execute(
            "SELECT tenant FROM sql_generation_log WHERE question = 'Claims per region for the log?'"
        )
        assert await cur.fetchall() == [("logged-co",)]


# ------------------------------------------------------------------ cost guard


async def test_forced_refresh_is_debounced(db_url: str, tmp_path: Path) -> None:
    async with running_service(
        database_url=db_url,
        data_dir=tmp_path,
        refresh_min_interval_s=86_400,  # a day: no machine is that slow between two calls
    ) as s:
        first = (await s.data("open-issues-kpi")).json()
        assert first["refresh_debounced"] is False and first["refresh_retry_after_s"] is None
        forced = (await s.data("open-issues-kpi", refresh=True)).json()
        assert forced["cache_hit"] is True and forced["resolved_at"] == first["resolved_at"]
        # the body says so (README "Try it"), and when a forced refresh will run again
        assert forced["refresh_debounced"] is True
        wait = forced["refresh_retry_after_s"]
        assert 86_400 - 60 < wait <= 86_400 - forced["freshness_seconds"] + 0.001, forced
    async with running_service(
        database_url=db_url, data_dir=tmp_path, refresh_min_interval_s=0
    ) as s:
        first = (await s.data("open-issues-kpi")).json()
        await asyncio.sleep(0.01)
        forced = (await s.data("open-issues-kpi", refresh=True)).json()
        assert forced["cache_hit"] is False and forced["resolved_at"] != first["resolved_at"]
        assert forced["refresh_debounced"] is False and forced["refresh_retry_after_s"] is None


async def test_llm_rate_limit_per_tenant(
    db_url: str, converse: ConverseServer, tmp_path: Path
) -> None:
    async with running_service(
        database_url=db_url,
        data_dir=tmp_path,
        bedrock_model_id=MODEL_ID,
        bedrock_endpoint_url=converse.url,
        auth_jwt_secret=SECRET,
        auth_audience="wdr",
        llm_rate_limit="2/minute",
    ) as s:
        h = token("thrifty", regions=["west"])

        async def gen(q: str, headers: dict[str, str] = h) -> httpx.Response:
            return await s.client.post(
                "/v1/widgets/sql/generate",
                json={"metric_id": "claims_insights", "question": q},
                headers=headers,
            )

        assert (await gen("q one?")).status_code == 200
        assert (await gen("q two?")).status_code == 200
        over = await gen("q three?")
        assert over.status_code == 429, over.text
        assert int(over.headers["retry-after"]) >= 1
        assert over.json()["kind"] == "llm_rate_limited"
        # another tenant has its own budget
        assert (await gen("q three?", token("spender", regions=["west"]))).status_code == 200
        # a question widget over budget degrades with the new kind
        spec = {
            "title": "q",
            "kind": "table",
            "data_intent": {"metric_id": "claims_insights", "question": "q four?"},
            "mock_data": [{"region": "x"}],
        }
        assert (await s.client.put("/v1/widgets/q4", json=spec, headers=h)).status_code == 201
        body = (await s.data("q4", headers=h)).json()
        assert body["live_data_unavailable"] is True and body["source"] == "llm_rate_limited"


# ------------------------------------------------------------------ dev mode


async def test_dev_mode_is_loopback_only(db_url: str, tmp_path: Path) -> None:
    async with running_service(database_url=db_url, data_dir=tmp_path) as s:
        ready = (await s.client.get("/readyz")).json()
        assert ready["components"]["auth"]["mode"] == "dev"
        assert (await s.data("open-issues-kpi")).status_code == 200
        assert (await s.client.get("/openapi.json")).status_code == 200
    async with running_service(database_url=db_url, data_dir=tmp_path, client_host="10.1.2.3") as s:
        r = await s.data("open-issues-kpi")
        assert r.status_code == 401 and "www-authenticate" in r.headers
        assert (await s.client.get("/openapi.json")).status_code == 401
        assert (await s.client.get("/healthz")).status_code == 200
        assert (await s.client.get("/readyz")).status_code == 200
    async with running_service(
        database_url=db_url,
        data_dir=tmp_path,
        client_host="10.1.2.3",
        auth_dev_open=True,
    ) as s:
        assert (await s.data("open-issues-kpi")).status_code == 200
        assert (await s.client.get("/readyz")).json()["components"]["auth"]["mode"] == "dev-open"


async def test_bearer_token_is_refused_in_dev_mode(db_url: str, tmp_path: Path) -> None:
    async with running_service(database_url=db_url, data_dir=tmp_path) as s:
        r = await s.data("open-issues-kpi", headers=token("default"))
        assert r.status_code == 401


@pytest.mark.parametrize(
    ("policy", "named"),
    [
        ("tables:\n  main.claims.nope: {column: region, claim: regions}\n", "main.claims.nope"),
        ("tables:\n  main.ops.alerts: {column: planet, claim: regions}\n", "'planet'"),
        ("series:\n  not_a_metric: {dimension: region, claim: regions}\n", "not_a_metric"),
        (
            "series:\n  claims_filed_count: {dimension: region, claim: regions}\n",
            "claims_filed_count",
        ),
        ("series:\n  cost_avoided_mtd: {dimension: team, claim: regions}\n", "'team'"),
        ("tables: [oops]\n", "mappings"),
    ],
)
async def test_boot_refuses_a_bad_access_policy(
    db_url: str, tmp_path: Path, policy: str, named: str
) -> None:
    from tests.support.servers import copy_config

    config = copy_config(tmp_path)
    (config / "access_policy.yaml").write_text(policy)
    from service.wiring import BootError

    with pytest.raises(BootError, match="refusing to start") as err:
        async with running_service(database_url=db_url, data_dir=tmp_path, config_dir=config):
            pass
    assert named in str(err.value)


# ------------------------------------------------------------------ observability routes


def _sse_events(text: str) -> list[tuple[str, Any]]:
    import json

    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


async def test_metrics_and_the_stream_follow_the_data_rule(svc: Service) -> None:
    assert (await svc.client.get("/metrics")).status_code == 401
    no_data = token("default", scope="widgets:read")
    assert (await svc.client.get("/metrics", headers=no_data)).status_code == 403
    ok = await svc.client.get("/metrics", headers=token("default", scope="data:read"))
    assert ok.status_code == 200 and "wdr_resolutions_total" in ok.text
    stream = "/v1/widgets/claims-filed-by-region/data/stream"
    assert (await svc.client.post(stream)).status_code == 401
    assert (await svc.client.post(stream, headers=no_data)).status_code == 403
    # another tenant's widget is a 404, as on /data
    assert (await svc.client.post(stream, headers=token("acme"))).status_code == 404


async def test_the_stream_applies_the_callers_row_filters(svc: Service) -> None:
    stream = "/v1/widgets/claims-filed-by-region/data/stream"
    west = await svc.client.post(stream, headers=token("default", regions=["southwest"]))
    assert west.status_code == 200
    kind, body = _sse_events(west.text)[-1]
    assert kind == "result" and body["source"] == "databricks"
    assert regions_of(body) == {"southwest"}
    plain = (
        await svc.data("claims-filed-by-region", headers=token("default", regions=["southwest"]))
    ).json()
    assert plain["data"] == body["data"]  # same rows as /data for the same caller


async def test_rs256_and_es256_tokens_through_a_jwks_server(db_url: str, tmp_path: Path) -> None:
    from fakes.jwks_server import JwksServer, SigningKey

    with JwksServer() as idp:
        async with running_service(
            database_url=db_url,
            data_dir=tmp_path,
            auth_jwks_url=idp.url,
            auth_issuer=idp.issuer,
            auth_audience=idp.audience,
            auth_jwks_refresh_s=0.001,  # always stale: every token tries a refetch
        ) as s:
            for alg in ("RS256", "ES256"):
                h = {"Authorization": f"Bearer {idp.mint(alg=alg, tenant='default')}"}
                assert (await s.data("open-issues-kpi", headers=h)).status_code == 200
            # an HS256 token signed with anything is not accepted with JWKS only
            assert (await s.data("open-issues-kpi", headers=token("default"))).status_code == 401
            ops = {"Authorization": f"Bearer {idp.mint(tenant='default', scope='ops:read')}"}
            ready = (await s.client.get("/readyz", headers=ops)).json()["components"]["auth"]
            assert ready["mode"] == "jwt" and ready["jwks_keys"] == 2
            idp.down = True  # the identity provider is unreachable: cached keys still verify
            h = {"Authorization": f"Bearer {idp.mint(alg='RS256', tenant='default')}"}
            assert (await s.data("open-issues-kpi", headers=h)).status_code == 200
            stranger = idp.mint(key=SigningKey.generate("RS256"))
            r = await s.data("open-issues-kpi", headers={"Authorization": f"Bearer {stranger}"})
            assert r.status_code == 401
