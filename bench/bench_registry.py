"""One tenant's large widgets against another tenant's writes (issue 18; not a test).

A "heavy" tenant stores HEAVY widgets of about SPEC_KB KiB each (the default limits allow
500 x 256 KiB); then a "light" tenant writes small widgets through the registry's one write
path while two instances listen. Reported: the light writes' latency, and the longest the
event loop went without running a 5 ms ticker meanwhile (what a /healthz would wait).

    .venv/bin/python bench/bench_registry.py [HEAVY] [SPEC_KB] [WRITES]

Real PostgreSQL (TEST_PG_ADMIN_URL, default postgres@127.0.0.1:5432): a fresh database,
dropped at the end.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import psycopg

from adapters.pg_migrate import migrate
from adapters.pg_seed import seed
from adapters.postgres import PgGateway
from adapters.registry import RegistryHolder, RegistryStore
from domain.models import DataIntent, WidgetSpec

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
CONFIG = Path(__file__).resolve().parents[1] / "config"


def spec(title: str, kib: int) -> WidgetSpec:
    rows = max(1, kib * 1024 // 110)
    return WidgetSpec(
        title=title,
        kind="table",
        data_intent=DataIntent(metric_id="nba_taken_pct"),
        mock_data=[{"value": i, "note": "n" * 90} for i in range(rows)][:1000],
    )


async def run(heavy: int, spec_kb: int, writes: int) -> None:
    name = f"wdr_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    gateways = [PgGateway(url), PgGateway(url)]
    holders: list[RegistryHolder] = []
    try:
        await migrate(url)
        await seed(url, CONFIG, history_days=1)
        for gw in gateways:
            await gw.open()
        routing = CONFIG / "metric_routing.yaml"
        holders = [await RegistryHolder.create(RegistryStore(gw.pool, routing)) for gw in gateways]
        writer, _watcher = holders
        big = spec("Big", spec_kb)
        for i in range(heavy):
            await writer.put_widget(f"big-{i}", big, tenant="heavy")
        for h in holders:
            await h.start()
            await h.wait_listening(30)
            await h.refresh()
        lag = 0.0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal lag
            last = time.perf_counter()
            while not stop.is_set():
                await asyncio.sleep(0.005)
                now = time.perf_counter()
                lag = max(lag, now - last - 0.005)
                last = now

        tick = asyncio.create_task(ticker())
        took: list[float] = []
        for i in range(writes):
            t0 = time.perf_counter()
            await writer.put_widget(f"small-{i}", spec(f"Small {i}", 1), tenant="light")
            took.append(time.perf_counter() - t0)
            await asyncio.sleep(0.05)  # let the listeners apply it (bench pacing, not a wait)
        stop.set()
        await tick
        print(
            f"heavy tenant: {heavy} widgets x ~{spec_kb} KiB; {writes} light PUTs: "
            f"median {statistics.median(took) * 1000:.1f} ms, max {max(took) * 1000:.1f} ms; "
            f"longest event-loop stall {lag * 1000:.1f} ms"
        )
    finally:
        for h in holders:
            await h.stop()
        for gw in gateways:
            await gw.close()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    heavy, spec_kb, writes = (args + [200, 100, 30][len(args) :])[:3]
    asyncio.run(run(heavy, spec_kb, writes))
