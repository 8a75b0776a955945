"""Integration: an answer computed with an approximate aggregate says so (`approximate`,
and which functions feed which columns), on the embedded engine and on Databricks (a
local Statement Execution server), live and from the cache; an exact answer says it is
not approximate. Real PostgreSQL and Redis; a local Bedrock Converse server writes the SQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from fakes.bedrock_converse import MODEL_ID, ConverseServer, ToolCall
from fakes.databricks_sea import FakeSeaServer
from tests.support.servers import (
    REDIS_URL,
    Service,
    converse_with_fake_aws,
    create_database,
    drop_database,
    running_service,
    sea_settings,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

APPROX_SQL = (
    "WITH per_region AS (SELECT region, approx_count_distinct(device_id) AS devices, "
    "count(*) AS events FROM main.claims.claim_events GROUP BY region) "
    "SELECT region, devices, events FROM per_region ORDER BY region"
)
EXACT_SQL = (
    "SELECT region, count(DISTINCT device_id) AS devices FROM main.claims.claim_events "
    "GROUP BY region ORDER BY region"
)


@pytest.fixture(scope="module")
def converse() -> Iterator[ConverseServer]:
    with converse_with_fake_aws() as srv:
        yield srv


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["embedded", "databricks"])
async def svc(
    request: pytest.FixtureRequest,
    converse: ConverseServer,
    sea: FakeSeaServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Service]:
    url = create_database()
    warehouse: dict[str, Any] = sea_settings(sea) if request.param == "databricks" else {}
    try:
        async with running_service(
            database_url=url,
            redis_url=REDIS_URL,
            cache_prefix=f"wdr-test:{Path(url).name}:",
            data_dir=tmp_path_factory.mktemp("data"),
            bedrock_model_id=MODEL_ID,
            bedrock_endpoint_url=converse.url,
            bedrock_timeout_s=2.0,
            **warehouse,
        ) as s:
            yield s
    finally:
        drop_database(url)


async def _ask(svc: Service, converse: ConverseServer, wid: str, sql: str) -> dict[str, Any]:
    spec = {
        "title": wid,
        "kind": "table",
        "mock_data": [{"region": "mock", "devices": 1}],
        "data_intent": {"metric_id": "claims_insights", "question": f"{wid}: devices by region"},
    }
    assert (await svc.client.put(f"/v1/widgets/{wid}", json=spec)).status_code in (200, 201)
    converse.reset()
    converse.script(ToolCall(sql=sql))
    body: dict[str, Any] = (await svc.data(wid, refresh=True)).json()
    assert body["live_data_unavailable"] is False and body["row_count"] > 0, body
    return body


async def test_an_approximate_aggregate_makes_the_answer_say_approximate(
    svc: Service, converse: ConverseServer, sea: FakeSeaServer
) -> None:
    body = await _ask(svc, converse, "approx-devices", APPROX_SQL)
    if svc.settings.databricks_host:  # the Databricks path ran it there
        assert sea.statement_texts[-1] == body["generated_sql"]
    assert body["approximate"] is True
    assert body["approximation"] == {"functions": ["approx_count_distinct"], "columns": ["devices"]}
    cached = (await svc.data("approx-devices")).json()
    assert cached["cache_hit"] is True and cached["approximate"] is True
    assert cached["approximation"] == body["approximation"]


async def test_an_exact_answer_is_not_approximate(svc: Service, converse: ConverseServer) -> None:
    body = await _ask(svc, converse, "exact-devices", EXACT_SQL)
    assert body["approximate"] is False and body["approximation"] is None
