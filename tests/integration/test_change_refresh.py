"""Refresh when the data changes, end to end: two service instances (real HTTP servers in
this process) sharing the real PostgreSQL and Redis, in front of the Statement Execution
fake (the real connector). Waits are on events and conditions (the change stream, the
watchers' probe counts), never on timings."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import yaml

from adapters.identity import mint_token
from adapters.lakehouse import CLAIM_EVENTS, new_claim_events
from fakes.databricks_sea import FakeSeaServer
from tests.support.clocks import until as support_until
from tests.support.servers import (
    REDIS_URL,
    Served,
    copy_config,
    create_database,
    drop_database,
    running_service,
    sea_settings,
    served,
)

WIDGET = "claims-filed-by-region"  # claims_filed_count over main.claims.claim_events
KPI = "open-issues-kpi"  # active_issues_count over kpi_metrics_history
TTL_S = 1
INTERVAL_S = 0.2
DEADLINE_S = 60.0  # a bound for waits on conditions, never a timing asserted


@dataclass
class Fleet:
    sea: FakeSeaServer
    db_url: str
    instances: list[Served]

    def watcher(self, i: int) -> Any:
        return self.instances[i].app.state.changes

    def reads_of(self, table: str) -> list[str]:
        return [s for s in self.sea.data_statements if table in s]

    def probes_of(self, table: str) -> int:
        return sum(1 for s in self.sea.statement_texts if "HISTORY" in s and table in s)


def short_ttls(tmp: Path) -> Path:
    config = copy_config(tmp)
    path = config / "metric_routing.yaml"
    routing = yaml.safe_load(path.read_text())
    for name in ("claims_filed_count", "active_issues_count"):
        routing["metrics"][name]["ttl_seconds"] = TTL_S
        routing["metrics"][name]["stale_while_revalidate_seconds"] = TTL_S
    path.write_text(yaml.safe_dump(routing))
    return config


@asynccontextmanager
async def fleet_of(sea: FakeSeaServer, tmp: Path) -> AsyncIterator[Fleet]:
    url = create_database()
    settings = {
        "database_url": url,
        "redis_url": REDIS_URL,
        "cache_prefix": f"wdr-test:{uuid.uuid4().hex[:8]}:",
        "data_dir": tmp,
        "config_dir": short_ttls(tmp),
        **sea_settings(sea),
        "seed_demo": True,  # a fresh database: the demo widgets
        "change_refresh": True,
        "data_version_interval_s": INTERVAL_S,
        "data_version_valid_s": 600.0,  # a slow tick on a busy machine is no probe failure
        "lease_heartbeat_s": 0.3,
    }
    try:
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(served(**settings))
            b = await stack.enter_async_context(served(**settings))
            yield Fleet(sea, url, [a, b])
    finally:
        drop_database(url)


async def data(client: httpx.AsyncClient, inst: Served, widget: str) -> dict[str, Any]:
    r = await client.post(f"{inst.url}/v1/widgets/{widget}/data", timeout=DEADLINE_S)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def until(check: Any) -> None:
    """Wait for a condition (the watchers' own progress), within DEADLINE_S."""
    await support_until(check, timeout_s=DEADLINE_S, every_s=0.02)


@asynccontextmanager
async def change_stream(client: httpx.AsyncClient, inst: Served) -> AsyncIterator[Any]:
    """GET /v1/changes, open (its `ready` event seen); yields the next `changed` event's
    data as a coroutine factory."""
    async with client.stream("GET", f"{inst.url}/v1/changes", timeout=DEADLINE_S) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = resp.aiter_lines()

        async def next_event() -> tuple[str, str]:
            event, payload = "", ""
            async for line in lines:
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    payload = line[5:].strip()
                elif line == "" and event:
                    return event, payload
            raise AssertionError("the change stream ended")

        assert (await next_event())[0] == "ready"

        async def changed(widget: str) -> None:
            while True:
                event, payload = await asyncio.wait_for(next_event(), DEADLINE_S)
                if event == "changed" and f'"{widget}"' in payload:
                    return

        yield changed


def region_value(body: dict[str, Any], region: str) -> float:
    rows = [r for r in body["data"] if r.get("region") == region]
    assert len(rows) == 1, body["data"]
    return float(next(v for k, v in rows[0].items() if k != "region"))


async def test_a_table_change_reaches_every_instance_and_nothing_reruns_while_it_holds(
    sea: FakeSeaServer, tmp_path: Path
) -> None:
    started = time.time()
    async with fleet_of(sea, tmp_path) as fleet, httpx.AsyncClient() as client:
        a, b = fleet.instances
        first = await data(client, a, WIDGET)
        assert first["source"] == "databricks" and not first["cache_hit"]
        assert (await data(client, b, WIDGET))["cache_hit"]
        reads = len(fleet.reads_of(CLAIM_EVENTS))
        probes_before = fleet.watcher(0).probes + fleet.watcher(1).probes
        answered = time.time()

        # the TTL (1 s) runs out several times over while the fleet keeps probing
        await until(
            lambda: (
                time.time() > answered + 4 * TTL_S
                and fleet.watcher(0).probes + fleet.watcher(1).probes > probes_before + 10
            )
        )
        for inst in (a, b, a, b):
            again = await data(client, inst, WIDGET)
            assert again["cache_hit"] and not again["stale"], again
            assert again["data"] == first["data"]
        assert len(fleet.reads_of(CLAIM_EVENTS)) == reads  # no data statement re-ran
        # probes: at most one per table per interval across both instances (an upper bound:
        # a busy machine only probes less often)
        assert fleet.probes_of(CLAIM_EVENTS) <= (time.time() - started) / INTERVAL_S + 2

        # rows appended: both instances' dashboards are told, and answer the new rows
        west = region_value(first, "west")
        async with change_stream(client, a) as changed_a, change_stream(client, b) as changed_b:
            # stamped a little in the past: a compiled range ends at the whole second it ran
            recent = datetime.now(UTC) - timedelta(seconds=10)
            sea.append(CLAIM_EVENTS, new_claim_events(3, now=recent, region="west"))
            await asyncio.gather(changed_a(WIDGET), changed_b(WIDGET))
        for inst in (a, b):
            now = await data(client, inst, WIDGET)
            assert region_value(now, "west") == west + 3, now
            assert not now["stale"]
        assert len(fleet.reads_of(CLAIM_EVENTS)) == reads + 1  # one refresh for the fleet


async def test_a_kpi_history_row_reaches_the_tile_on_both_instances(
    sea: FakeSeaServer, tmp_path: Path
) -> None:
    async with fleet_of(sea, tmp_path) as fleet, httpx.AsyncClient() as client:
        a, b = fleet.instances
        before = await data(client, a, KPI)
        assert before["source"] == "postgres"
        assert (await data(client, b, KPI))["data"] == before["data"]
        async with change_stream(client, a) as changed_a, change_stream(client, b) as changed_b:
            async with await psycopg.AsyncConnection.connect(fleet.db_url, autocommit=True) as conn:
                await conn.execute(
                    "INSERT INTO kpi_metrics_history (metric_name, recorded_at, value, dimensions)"
                    " VALUES ('active_issues_count', now(), 987654,"
                    ' \'{"team": "platform", "severity": "critical"}\')'
                )
            await asyncio.gather(changed_a(KPI), changed_b(KPI))
        for inst in (a, b):
            after = await data(client, inst, KPI)
            assert after["data"] != before["data"], after
            assert not after["stale"]


SECRET = "change-stream-secret-at-least-32-bytes"


async def test_the_change_stream_needs_data_read_and_is_a_204_when_off(tmp_path: Path) -> None:
    url = create_database()
    try:
        async with running_service(
            database_url=url,
            data_dir=tmp_path,
            seed_demo=True,
            auth_jwt_secret=SECRET,
            auth_audience="wdr",
        ) as s:
            anonymous = await s.client.get("/v1/changes")
            assert anonymous.status_code == 401
            assert anonymous.headers["content-type"] == "application/problem+json"

            def bearer(scopes: str) -> dict[str, str]:
                token = mint_token(SECRET, tenant="acme", scopes=scopes, audience="wdr")
                return {"Authorization": f"Bearer {token}"}

            no_scope = await s.client.get("/v1/changes", headers=bearer("widgets:read"))
            assert no_scope.status_code == 403
            off = await s.client.get("/v1/changes", headers=bearer("data:read"))
            assert off.status_code == 204  # CHANGE_REFRESH is off: the dashboard polls
            assert off.content == b""
    finally:
        drop_database(url)
