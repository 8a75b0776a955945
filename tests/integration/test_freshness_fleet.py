"""One backend query across service processes: real `resolver serve` processes sharing the
real Redis and PostgreSQL, in front of one local Databricks Statement Execution server
(the real connector) that counts the statements it receives."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import httpx
import pytest

from fakes.databricks_sea import FakeSeaServer
from tests.support.servers import REDIS_URL, create_database, drop_database, entry_point, free_port

RESOLVER = entry_point("resolver")


@dataclass
class Instance:
    proc: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@dataclass
class Fleet:
    sea: FakeSeaServer
    env: dict[str, str]
    instances: list[Instance]

    def start(self) -> Instance:
        port = free_port()
        proc = subprocess.Popen(
            [RESOLVER, "serve"],
            env=self.env | {"PORT": str(port)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        inst = Instance(proc, f"http://127.0.0.1:{port}")
        self.instances.append(inst)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert proc.poll() is None, "resolver serve exited"
            try:
                # ready, with a warehouse session open (the connector's first import and
                # session are slow on a busy machine; the tests time what follows)
                ready = httpx.get(inst.url + "/readyz", timeout=30).json()
                if ready["components"]["warehouse"]["ok"]:
                    return inst
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("resolver serve did not come up")

    def statements(self, needle: str) -> list[str]:
        return [s for s in self.sea.statement_texts if needle in s]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    from adapters.lakehouse import build_lakehouse

    con = duckdb.connect()
    build_lakehouse(con, now=datetime.now(UTC))
    url = create_database()
    tmp: Path = tmp_path_factory.mktemp("fleet")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "BEDROCK_"))}
    with FakeSeaServer(con, token="dapi-fleet") as sea:
        env |= {
            "DATABASE_URL": url,
            "SEED_DEMO": "true",  # a fresh database: the demo widgets
            "REDIS_URL": REDIS_URL,
            "CACHE_PREFIX": f"wdr-test:{uuid.uuid4().hex[:8]}:",
            "DATA_DIR": str(tmp / "data"),
            "DATABRICKS_HOST": f"{sea.server_hostname}:{sea.port}",
            "DATABRICKS_HTTP_PATH": sea.http_path,
            "DATABRICKS_TOKEN": "dapi-fleet",
            "DATABRICKS_TRANSPORT": "sea",
            "DATABRICKS_QUERY_TIMEOUT_S": "15",
            "LEASE_HEARTBEAT_S": "0.3",
            "REFRESH_AHEAD": "false",
            "LOG_LEVEL": "WARNING",
        }
        f = Fleet(sea, env, [])
        try:
            f.start()
            f.start()
            yield f
        finally:
            for inst in f.instances:
                inst.stop()
            drop_database(url)


async def _data(client: httpx.AsyncClient, inst: Instance, widget: str) -> dict:
    r = await client.post(f"{inst.url}/v1/widgets/{widget}/data", timeout=60)
    assert r.status_code == 200
    body: dict = r.json()
    return body


async def test_concurrent_misses_on_two_processes_cost_one_statement(fleet: Fleet) -> None:
    a, b = fleet.instances[:2]
    fleet.sea.statement_delay_s = 1.0
    try:
        async with httpx.AsyncClient() as client:
            bodies = await asyncio.gather(
                *(_data(client, (a, b)[i % 2], "claims-filed-by-region") for i in range(12))
            )
    finally:
        fleet.sea.statement_delay_s = 0.0
    assert all(x["source"] == "databricks" and x["row_count"] > 0 for x in bodies), bodies[0]
    assert len({x["resolved_at"] for x in bodies}) == 1  # everyone got the leader's answer
    assert len(fleet.statements("region")) == 1


async def test_a_leader_killed_mid_query_is_taken_over(fleet: Fleet) -> None:
    b = fleet.instances[1]
    leader = fleet.start()  # a third process, killed below
    widget = "claims-paid-weekly"  # its statement is the only one with a weekly grain

    def weekly() -> list[str]:
        return [s for s in fleet.sea.statement_texts if "week" in s.lower()]

    before = len(weekly())
    fleet.sea.statement_delay_s = 3.0
    try:
        async with httpx.AsyncClient() as client:
            lead = asyncio.create_task(_data(client, leader, widget))
            for _ in range(200):  # the leader's statement is running on the warehouse
                if len(weekly()) > before:
                    break
                await asyncio.sleep(0.05)
            follow = asyncio.create_task(_data(client, b, widget))
            await asyncio.sleep(0.5)
            assert not follow.done()  # it waits for the leader instead of querying
            leader.proc.send_signal(signal.SIGKILL)
            t0 = time.monotonic()
            body = await asyncio.wait_for(follow, 30)
            took = time.monotonic() - t0
            lead.cancel()
    finally:
        fleet.sea.statement_delay_s = 0.0
    assert body["source"] == "databricks" and body["row_count"] > 0, body
    assert len(weekly()) - before == 2  # the dead leader's and the follower's own
    assert took < 3.0 + 5.0  # taken over within a few heartbeats, not the lease's 25 s TTL
