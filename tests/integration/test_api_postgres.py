"""Integration: the HTTP API over real PostgreSQL and Redis, Postgres path and its failures."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from adapters.cache import RedisCache
from adapters.near_cache import NearCache
from domain.failures import InvalidIntent
from domain.models import RESERVED_WIDGET_IDS, WidgetSpec
from service.wiring import BootError
from tests.support.servers import (
    RESPONSE_FIELDS,
    Service,
    copy_config,
    create_database,
    drop_database,
    free_port,
    redis_client_of,
    running_service,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_postgres_widget_live_then_cached_then_refreshed(svc: Service) -> None:
    r1 = await svc.data("issues-by-severity")
    assert r1.status_code == 200 and r1.headers["content-type"] == "application/json"
    b1 = r1.json()
    assert b1["source"] == "postgres" and b1["backend"] == "postgres" and b1["cache_hit"] is False
    assert (
        b1["live_data_unavailable"] is False
        and b1["executed"] is True
        and b1["error_detail"] is None
    )
    assert b1["row_count"] == len(b1["data"]) > 0
    assert {c["name"] for c in b1["schema"]} == {"severity", "value"}
    assert "kpi_metrics_history" in b1["generated_sql"]
    assert set(b1) == RESPONSE_FIELDS
    await asyncio.sleep(0.01)
    b2 = (await svc.data("issues-by-severity")).json()
    assert b2["cache_hit"] is True and b2["freshness_seconds"] > 0 and b2["data"] == b1["data"]
    assert b2["resolved_at"] == b1["resolved_at"]
    b3 = (await svc.data("issues-by-severity", refresh=True)).json()
    assert b3["cache_hit"] is False and b3["source"] == "postgres"
    # the answer really lives in Redis, under the configured prefix
    cache = svc.res.context.cache
    assert isinstance(cache, NearCache) and isinstance(cache.redis, RedisCache)
    keys = await redis_client_of(cache).keys(
        svc.settings.cache_prefix + "r2:default:issues-by-severity:*"
    )
    assert len(keys) == 1


@pytest.mark.parametrize(
    "widget_id",
    [
        "open-issues-kpi",
        "claims-in-progress-trend",
        "cost-avoided-mtd",
        "critical-alerts-15m",
        "nba-taken-by-channel",
    ],
)
async def test_every_postgres_demo_widget_answers_live(svc: Service, widget_id: str) -> None:
    body = (await svc.data(widget_id, refresh=True)).json()
    assert body["source"] == "postgres", body
    assert body["row_count"] > 0


async def test_trace_lists_the_nodes(svc: Service) -> None:
    body = (await svc.data("open-issues-kpi", refresh=True, trace=True)).json()
    assert [t["node"] for t in body["trace"]] == [
        "route",
        "cache_lookup",
        "postgres_query",
        "degrade_or_return",
    ]
    body = (await svc.data("open-issues-kpi", trace=True)).json()
    assert [t["node"] for t in body["trace"]] == ["route", "cache_lookup", "degrade_or_return"]
    assert "trace" not in (await svc.data("open-issues-kpi")).json()


async def test_dry_run_returns_sql_without_running(svc: Service) -> None:
    body = (await svc.data("nba-taken-by-channel", dry_run=True)).json()
    assert body["executed"] is False and body["dry_run"] is True and body["data"] == []
    assert "kpi_metrics_history" in body["generated_sql"]


async def test_unknown_widget_is_a_404_problem(svc: Service) -> None:
    r = await svc.data("no-such-widget")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    p = r.json()
    assert (
        p["status"] == 404 and p["title"] == "Widget not found" and "no-such-widget" in p["detail"]
    )


@pytest.mark.parametrize(
    "path, body",
    [
        ("/v1/widgets/bad%20id!/data", None),
        ("/v1/widgets/open-issues-kpi/data", {"refresh": "maybe"}),
        ("/v1/widgets/open-issues-kpi/data", {"refresh": True, "bogus": 1}),
    ],
)
async def test_malformed_requests_are_422_problems(
    svc: Service, path: str, body: dict | None
) -> None:
    r = await svc.client.post(path, json=body)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"]


async def test_malformed_json_body_is_a_422_problem(svc: Service) -> None:
    r = await svc.client.post(
        "/v1/widgets/open-issues-kpi/data",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"


async def test_widget_crud(svc: Service) -> None:
    spec = {
        "title": "Open issues by team",
        "kind": "bar",
        "data_intent": {
            "metric_id": "active_issues_count",
            "dimensions": ["team"],
            "time_range": "last_24h",
        },
        "mock_data": [{"team": "platform", "value": 1}],
    }
    r = await svc.client.put("/v1/widgets/issues-by-team", json=spec)
    assert r.status_code == 201, r.text
    assert (await svc.client.put("/v1/widgets/issues-by-team", json=spec)).status_code == 200
    got = (await svc.client.get("/v1/widgets/issues-by-team")).json()
    assert got["spec"]["data_intent"]["dimensions"] == ["team"]
    ids = [w["id"] for w in (await svc.client.get("/v1/widgets")).json()["widgets"]]
    assert "issues-by-team" in ids and "open-issues-kpi" in ids
    body = (await svc.data("issues-by-team")).json()
    assert body["source"] == "postgres" and {"team", "value"} <= set(body["data"][0])
    # it is in PostgreSQL, not only in memory
    async with await psycopg.AsyncConnection.connect(svc.settings.database_url or "") as conn:
        cur = await conn.execute("SELECT spec->>'title' FROM widgets WHERE id = 'issues-by-team'")
        assert (await cur.fetchone()) == ("Open issues by team",)
    assert (await svc.client.delete("/v1/widgets/issues-by-team")).status_code == 204
    assert (await svc.client.get("/v1/widgets/issues-by-team")).status_code == 404
    assert (await svc.client.delete("/v1/widgets/issues-by-team")).status_code == 404


@pytest.mark.parametrize(
    "intent, needle",
    [
        ({"metric_id": "no_such_metric"}, "unknown metric"),
        ({"metric_id": "active_issues_count", "dimensions": ["salary"]}, "salary"),
        ({"metric_id": "active_issues_count", "filters": [{"column": "ssn", "value": "1"}]}, "ssn"),
    ],
)
async def test_put_widget_with_invalid_intent_is_422(
    svc: Service, intent: dict, needle: str
) -> None:
    spec = {"title": "t", "kind": "kpi", "data_intent": intent, "mock_data": [{"value": 1}]}
    r = await svc.client.put("/v1/widgets/bad-widget", json=spec)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert needle in r.json()["detail"]
    assert (await svc.client.get("/v1/widgets/bad-widget")).status_code == 404


async def test_put_widget_with_malformed_spec_is_422_with_field_errors(svc: Service) -> None:
    r = await svc.client.put("/v1/widgets/w1", json={"title": "", "kind": "donut"})
    assert r.status_code == 422
    locs = {".".join(e["loc"]) for e in r.json()["errors"]}
    assert {"body.title", "body.kind", "body.data_intent", "body.mock_data"} <= locs


async def test_health_and_readiness(svc: Service) -> None:
    assert (await svc.client.get("/healthz")).json() == {"status": "ok"}
    ready = (await svc.client.get("/readyz")).json()
    assert ready["status"] == "ok"
    assert ready["components"]["postgres"]["ok"] and ready["components"]["cache"]["ok"]
    assert ready["components"]["warehouse"]["ok"]


async def _exec(url: str, sql: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(sql)


async def _wait_for(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_postgres_error_when_the_table_is_gone(svc: Service) -> None:
    url = svc.settings.database_url or ""
    good = (await svc.data("open-issues-kpi", refresh=True)).json()
    assert good["source"] == "postgres" and good["stale"] is False
    await _exec(url, "ALTER TABLE kpi_metrics_history RENAME TO kpi_metrics_history_away")
    try:
        body = (await svc.data("open-issues-kpi", refresh=True)).json()
    finally:
        await _exec(url, "ALTER TABLE kpi_metrics_history_away RENAME TO kpi_metrics_history")
    assert body["source"] == "postgres_error" and body["live_data_unavailable"] is True
    assert "kpi_metrics_history" in body["error_detail"]
    # the last good answer, flagged, not the mock (tests/integration/test_freshness.py)
    assert body["data"] == good["data"] and body["stale"] is True
    assert body["stale_reason"] == "postgres_error"
    assert (await svc.data("open-issues-kpi", refresh=True)).json()["source"] == "postgres"


async def test_postgres_timeout_when_the_table_is_locked(svc: Service) -> None:
    url = svc.settings.database_url or ""
    good = (await svc.data("cost-avoided-mtd", refresh=True)).json()
    async with await psycopg.AsyncConnection.connect(url) as locker:
        await locker.execute("LOCK TABLE kpi_metrics_history IN ACCESS EXCLUSIVE MODE")
        body = (await svc.data("cost-avoided-mtd", refresh=True)).json()
        await locker.rollback()
    assert body["source"] == "postgres_timeout" and body["live_data_unavailable"] is True
    assert body["data"] == good["data"] and body["stale_reason"] == "postgres_timeout"


async def test_stale_widget_in_the_database_degrades_as_invalid_intent(svc: Service) -> None:
    """A spec written behind the API's back (bad dimension) reaches every instance by NOTIFY."""
    url = svc.settings.database_url or ""
    spec = {
        "title": "stale",
        "kind": "bar",
        "mock_data": [{"v": 1}],
        "data_intent": {"metric_id": "active_issues_count", "dimensions": ["salary"]},
    }
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO widgets (id, spec) VALUES ('stale-widget', %s::jsonb)", (json.dumps(spec),)
        )
    await _wait_for(lambda: svc.res.registry.widget("stale-widget") is not None)
    body = (await svc.data("stale-widget")).json()
    assert body["source"] == "invalid_intent" and "salary" in body["error_detail"]
    assert body["data"] == [{"v": 1}]


async def test_metric_added_without_routing_degrades_as_routing_missing(svc: Service) -> None:
    url = svc.settings.database_url or ""
    definition = {"table": "kpi_metrics_history", "aggregation": "sum", "dimensions": []}
    spec = {
        "title": "new",
        "kind": "kpi",
        "mock_data": [{"value": 0}],
        "data_intent": {"metric_id": "brand_new_metric"},
    }
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO metrics_catalog (name, description, unit, owner, definition, governance_status) "
            "VALUES ('brand_new_metric', 'd', 'u', 'o', %s::jsonb, 'draft')",
            (json.dumps(definition),),
        )
        await conn.execute(
            "INSERT INTO widgets (id, spec) VALUES ('new-metric-widget', %s::jsonb)",
            (json.dumps(spec),),
        )
    await _wait_for(
        lambda: (
            svc.res.registry.widget("new-metric-widget") is not None
            and svc.res.registry.metric("brand_new_metric") is not None
        )
    )
    body = (await svc.data("new-metric-widget")).json()
    assert body["source"] == "routing_missing" and body["live_data_unavailable"] is True


# ------------------------------------------------------------------ separate services


NPS_METRIC = {
    "name": "nps_score",
    "description": "Net promoter score",
    "unit": "points",
    "owner": "cx",
    "definition": {"table": "kpi_metrics_history", "aggregation": "avg", "dimensions": []},
}
# routed to postgres, but not a kpi_metrics_history metric: the gateway cannot serve it
UNSERVABLE_NPS = NPS_METRIC | {"definition": {"table": "nps_answers", "aggregation": "avg"}}


def _route_nps(cfg: Path) -> None:
    routing = yaml.safe_load((cfg / "metric_routing.yaml").read_text())
    routing["metrics"]["nps_score"] = {"backend": "postgres", "ttl_seconds": 60}
    (cfg / "metric_routing.yaml").write_text(yaml.safe_dump(routing))


async def test_boot_refuses_a_postgres_metric_without_an_allowlisted_query(
    tmp_path: Path,
) -> None:
    # issue 9: it booted and then degraded on every request
    cfg = copy_config(tmp_path)
    metrics = yaml.safe_load((cfg / "metrics.yaml").read_text())
    metrics["metrics"].append(UNSERVABLE_NPS)
    metrics["metrics"].append(
        {
            "name": "wh_no_measure",
            "description": "a warehouse metric without a measure",
            "unit": "n",
            "owner": "x",
            "definition": {"table": "main.claims.claim_events", "time_column": "event_ts"},
        }
    )
    (cfg / "metrics.yaml").write_text(yaml.safe_dump(metrics))
    _route_nps(cfg)
    routing = yaml.safe_load((cfg / "metric_routing.yaml").read_text())
    routing["metrics"]["wh_no_measure"] = {"backend": "databricks"}
    (cfg / "metric_routing.yaml").write_text(yaml.safe_dump(routing))
    url = create_database()
    try:
        with pytest.raises(BootError) as err:
            async with running_service(database_url=url, config_dir=cfg, data_dir=tmp_path):
                pass
        text = str(err.value)
        assert "'nps_score' is not a kpi_metrics_history metric" in text
        assert "routed to postgres" in text
        assert "'wh_no_measure' is routed to databricks" in text and "measure" in text
    finally:
        drop_database(url)


@pytest.mark.parametrize(
    ("metric", "source"), [(NPS_METRIC, "postgres"), (UNSERVABLE_NPS, "postgres_unmapped")]
)
async def test_a_postgres_metric_added_at_runtime_runs_from_its_definition(
    tmp_path: Path, metric: dict[str, Any], source: str
) -> None:
    """A PostgreSQL metric needs no code: added while serving, it runs from its catalog
    definition; one the gateway cannot serve degrades as postgres_unmapped."""
    cfg = copy_config(tmp_path)
    url = create_database()
    try:
        async with running_service(database_url=url, config_dir=cfg, data_dir=tmp_path) as s:
            _route_nps(cfg)  # boot validation never saw it: added while serving
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                await conn.execute(
                    "INSERT INTO metrics_catalog (name, description, unit, owner, definition)"
                    " VALUES ('nps_score', 'Net promoter score', 'points', 'cx', %s::jsonb)",
                    (json.dumps(metric["definition"]),),
                )
            await _wait_for(lambda: s.res.registry.routing("nps_score") is not None)
            spec = {
                "title": "NPS",
                "kind": "kpi",
                "data_intent": {"metric_id": "nps_score"},
                "mock_data": [{"value": 31}],
            }
            assert (await s.client.put("/v1/widgets/nps", json=spec)).status_code == 201
            body = (await s.data("nps")).json()
            assert body["source"] == source, body
            if source == "postgres_unmapped":
                assert body["data"] == [{"value": 31}] and "nps_score" in body["error_detail"]
            else:
                assert body["live_data_unavailable"] is False and body["executed"] is True
    finally:
        drop_database(url)


async def test_redis_down_still_serves_live_rows(tmp_path: Path) -> None:
    port = free_port()
    url = create_database()
    try:
        async with running_service(
            database_url=url, redis_url=f"redis://127.0.0.1:{port}/0", data_dir=tmp_path
        ) as s:
            for _ in range(2):
                body = (await s.data("open-issues-kpi")).json()
                assert (
                    body["source"] == "postgres"
                    and body["cache_hit"] is False
                    and body["row_count"] > 0
                )
            ready = (await s.client.get("/readyz")).json()
            assert ready["status"] == "degraded" and ready["components"]["cache"]["ok"] is False
    finally:
        drop_database(url)


async def test_postgres_outage_degrades_then_recovers(tmp_path: Path) -> None:
    from fakes.tcp_proxy import TcpProxy

    url = create_database()
    dbname = url.rpartition("/")[2]
    proxy = TcpProxy("127.0.0.1", 5432)
    await proxy.start()
    try:
        proxied = f"postgresql://postgres@127.0.0.1:{proxy.port}/{dbname}"
        async with running_service(
            database_url=proxied, data_dir=tmp_path, pg_connect_timeout_s=1.0
        ) as s:
            good = (await s.data("open-issues-kpi", refresh=True)).json()
            assert good["source"] == "postgres"
            await proxy.stop()
            body = (await s.data("open-issues-kpi", refresh=True)).json()
            assert (
                body["source"] == "postgres_unavailable" and body["live_data_unavailable"] is True
            )
            assert body["data"] == good["data"] and body["error_detail"] and body["stale"]
            # the widget registry survives the outage
            assert (await s.client.get("/v1/widgets/open-issues-kpi")).status_code == 200
            await proxy.start()
            for _ in range(50):
                body = (await s.data("open-issues-kpi", refresh=True)).json()
                if body["source"] == "postgres":
                    break
                await asyncio.sleep(0.2)
            assert body["source"] == "postgres" and body["live_data_unavailable"] is False
    finally:
        await proxy.stop()
        drop_database(url)


async def test_a_bug_is_a_500_problem_not_a_stack_trace(svc: Service) -> None:
    import httpx

    async def broken() -> None:
        raise RuntimeError("boom")

    svc.app.add_api_route("/test-only/broken", broken)
    transport = httpx.ASGITransport(app=svc.app, raise_app_exceptions=False)
    # a loopback Host name: dev mode refuses others (issue 18)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        r = await client.get("/test-only/broken")
    assert r.status_code == 500 and r.headers["content-type"] == "application/problem+json"
    assert "boom" not in r.text


async def test_server_timing_header_carries_the_trace(svc: Service) -> None:
    r = await svc.data("open-issues-kpi", refresh=True)
    timing = r.headers["server-timing"]
    assert [part.split(";")[0].strip() for part in timing.split(",")] == [
        "route",
        "cache_lookup",
        "postgres_query",
        "degrade_or_return",
    ]
    assert 'desc="live"' in timing


async def test_batch_resolves_several_widgets_in_one_round_trip(svc: Service) -> None:
    r = await svc.client.post(
        "/v1/widgets/data",
        json={"widget_ids": ["open-issues-kpi", "nope", "claims-filed-by-region"], "refresh": True},
    )
    assert r.status_code == 200, r.text
    doc = r.json()
    assert [x["widget_id"] for x in doc["results"]] == ["open-issues-kpi", "claims-filed-by-region"]
    assert [x["source"] for x in doc["results"]] == ["postgres", "databricks"]
    assert doc["not_found"] == ["nope"]


@pytest.mark.parametrize(
    "body",
    [
        {"widget_ids": []},
        {"widget_ids": ["a", "a"]},
        {"widget_ids": ["bad id"]},
        {"widget_ids": [str(i) for i in range(51)]},
    ],
)
async def test_batch_validation_is_a_422_problem(svc: Service, body: dict) -> None:
    r = await svc.client.post("/v1/widgets/data", json=body)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"


async def test_metric_catalog_lists_routing_and_dimensions(svc: Service) -> None:
    doc = (await svc.client.get("/v1/metrics")).json()
    by_name = {m["name"]: m for m in doc["metrics"]}
    assert by_name["active_issues_count"]["backend"] == "postgres"
    assert by_name["active_issues_count"]["dimensions"] == ["team", "severity"]
    assert by_name["claims_insights"]["generator"] == "llm"
    assert "region" in by_name["alert_mttr_minutes"]["filter_columns"]


def _spec(intent: dict, mock: list | None = None) -> dict:
    return {"title": "t", "kind": "kpi", "data_intent": intent, "mock_data": mock or [{"value": 1}]}


@pytest.mark.parametrize(
    "spec, needle",
    [
        (
            _spec(
                {
                    "metric_id": "claims_filed_count",
                    "filters": [{"column": "region", "value": 10**30}],
                }
            ),
            "64-bit",
        ),
        (_spec({"metric_id": "claims_insights"}, [{"value": 10**30}]), "64-bit"),
        (_spec({"metric_id": "claims_insights"}, [{"value": 1e20}]), "too large"),
        (_spec({"metric_id": "claims_insights"}, [{"value": "a\u0000b"}]), "NUL"),
        (
            _spec(
                {
                    "metric_id": "active_issues_count",
                    "time_range": {
                        "start": "0001-01-01T00:00:00+05:00",
                        "end": "2026-01-01T00:00:00Z",
                    },
                }
            ),
            "out of range",
        ),
        (
            _spec(
                {
                    "metric_id": "active_issues_count",
                    "time_range": {"start": "1850-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
                }
            ),
            "between the years",
        ),
        (_spec({"metric_id": "active_issues_count", "time_range": "last_1d\n"}), "time_range"),
        (
            _spec(
                {
                    "metric_id": "active_issues_count",
                    "filters": [{"column": "team", "op": ">", "value": "a"}],
                }
            ),
            "not supported",
        ),
        (_spec({"metric_id": "active_issues_count", "question": "how many?"}), "warehouse metric"),
    ],
)
async def test_put_rejects_specs_that_could_not_be_stored_or_served(
    svc: Service, spec: dict, needle: str
) -> None:
    r = await svc.client.put("/v1/widgets/qa-bad", json=spec)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json" and needle in r.text
    assert (await svc.client.get("/v1/widgets/qa-bad")).status_code == 404


async def test_put_rejects_nan_in_raw_json(svc: Service) -> None:
    body = b'{"title":"t","kind":"kpi","data_intent":{"metric_id":"claims_insights"},"mock_data":[{"value":NaN}]}'
    r = await svc.client.put(
        "/v1/widgets/qa-nan", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"


async def test_flags_must_be_real_booleans(svc: Service) -> None:
    r = await svc.client.post("/v1/widgets/open-issues-kpi/data", json={"refresh": "yes"})
    assert r.status_code == 422


async def test_wrong_method_is_a_405_problem_with_allow(svc: Service) -> None:
    r = await svc.client.get("/v1/widgets/open-issues-kpi/data")
    assert r.status_code == 405 and r.headers["content-type"] == "application/problem+json"
    assert "POST" in r.headers["allow"]


async def test_oversized_body_is_a_413_problem(svc: Service) -> None:
    big = b'{"title": "' + b"x" * (svc.settings.max_body_bytes + 10) + b'"}'
    r = await svc.client.put(
        "/v1/widgets/too-big", content=big, headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"


async def test_mock_column_order_survives_a_reload(svc: Service) -> None:
    spec = _spec({"metric_id": "claims_insights"}, [{"zeta": 1, "alpha": "a", "mid": 2.5}])
    assert (await svc.client.put("/v1/widgets/ordered", json=spec)).status_code in (200, 201)
    await svc.res.registry.refresh()  # as every other instance would: read back from PostgreSQL
    body = (await svc.data("ordered")).json()
    assert body["source"] == "bedrock_unconfigured"
    assert list(body["data"][0]) == ["zeta", "alpha", "mid"]
    assert [c["name"] for c in body["schema"]] == ["zeta", "alpha", "mid"]


async def test_chunked_oversized_body_is_a_413_problem(svc: Service) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(3):
            yield b"x" * svc.settings.max_body_bytes

    r = await svc.client.put(
        "/v1/widgets/too-big", content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"


async def test_405_allow_lists_every_method_of_the_path(svc: Service) -> None:
    r = await svc.client.patch("/v1/widgets/open-issues-kpi")
    assert r.status_code == 405 and r.headers["allow"] == "DELETE, GET, PUT"


async def test_nul_in_a_question_is_a_422_not_a_500(svc: Service) -> None:
    r = await svc.client.post(
        "/v1/widgets/sql/generate", json={"metric_id": "claims_filed_count", "question": "a\u0000b"}
    )
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"


# ------------------------------------------------------------------ issue 9: names and redirects

WIDGET_SPEC = {
    "title": "t",
    "kind": "kpi",
    "data_intent": {"metric_id": "active_issues_count"},
    "mock_data": [{"value": 1}],
}


@pytest.mark.parametrize("reserved", sorted(RESERVED_WIDGET_IDS))
async def test_a_widget_id_colliding_with_a_route_is_a_422(svc: Service, reserved: str) -> None:
    r = await svc.client.put(f"/v1/widgets/{reserved}", json=WIDGET_SPEC)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert "reserved" in r.json()["detail"] and svc.res.registry.widget(reserved) is None
    with pytest.raises(InvalidIntent, match="reserved"):  # the write path refuses it too
        await svc.res.registry.put_widget(reserved, WidgetSpec.model_validate(WIDGET_SPEC))


async def test_options_on_the_batch_path_lists_only_its_own_methods(svc: Service) -> None:
    r = await svc.client.options("/v1/widgets/data")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    r = await svc.client.options("/v1/widgets/open-issues-kpi")
    assert set(r.headers["allow"].split(", ")) == {"DELETE", "GET", "PUT"}


async def test_every_static_segment_after_v1_widgets_is_reserved(svc: Service) -> None:
    segments = {
        path.split("/")[3]
        for path in svc.app.openapi()["paths"]
        if path.startswith("/v1/widgets/") and not path.split("/")[3].startswith("{")
    }
    assert segments and segments <= RESERVED_WIDGET_IDS


@pytest.mark.parametrize(
    "path", ["/v1/widgets/", "/v1/metrics/", "/healthz/", "/v1/widgets/open-issues-kpi/"]
)
async def test_a_trailing_slash_is_never_redirected_to_the_request_host(
    svc: Service, path: str
) -> None:
    r = await svc.client.get(path, headers={"Host": "evil.example"})
    # (dev mode refuses the host name itself: a 403, issue 18)
    assert r.status_code in (403, 404, 405) and "location" not in r.headers
    assert r.headers["content-type"] == "application/problem+json"
    assert "evil.example" not in r.text


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded", "text/plain"])
async def test_a_json_body_without_the_json_content_type_says_to_set_it(
    svc: Service, content_type: str | None
) -> None:
    """`curl -d '{"refresh": true}'` without `-H 'content-type: application/json'` sends a
    form: the problem says which header to set."""
    headers = {"content-type": content_type} if content_type else {}
    r = await svc.client.post(
        "/v1/widgets/open-issues-kpi/data", content=b'{"refresh": true}', headers=headers
    )
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    detail = r.json()["detail"]
    assert "content-type: application/json" in detail, detail
    assert (content_type or "no content-type") in detail, detail
