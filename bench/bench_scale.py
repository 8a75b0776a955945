"""`make bench-scale`: freshness at scale (a benchmark, not a test).

Starts, on this machine:
- one local Databricks Statement Execution API server (fakes.databricks_sea, DuckDB behind
  it, every statement held ~1 s) in its own process: the warehouse, shared by the fleet;
- a fresh database on the real PostgreSQL and a fresh key prefix on the real Redis;
- INSTANCES `resolver serve` processes (DATABRICKS_TRANSPORT=sea to reach the fake) with a
  copy of config/ whose warehouse metrics have TTLs of 10-20 s and a 12-widget dashboard;
then VIEWERS simulated viewers, each loading the dashboard with the batch endpoint every
INTERVAL seconds (with jitter, one keep-alive connection each, spread over the instances)
for DURATION seconds; OUTAGE_AT seconds in, the warehouse answers HTTP 503 for OUTAGE_S
seconds.

It prints: warehouse statements per widget per TTL window (the whole fleet), viewer latency
p50/p99 after the first fill, the count of stale, mock and error answers (overall and during
the outage), and how long after the warehouse is back each tile is fresh again.
Targets: <= 1 statement per widget per TTL window; p99 < 100 ms; 0 mock and 0 errors during
the outage; fresh again within one TTL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from bench_http import Conn  # noqa: E402
from scale_report import Sample, print_report, report  # noqa: E402

PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
TOKEN = "dapi-bench"

# the six warehouse metrics, with TTLs from 10 to 20 s
TTLS = {
    "claims_filed_count": 10,
    "claims_paid_amount": 12,
    "avg_claim_amount": 14,
    "alerts_raised_count": 16,
    "alert_mttr_minutes": 18,
    "devices_enrolled_count": 20,
}
# a 12-widget dashboard: two widgets per metric
DASHBOARD: dict[str, dict[str, Any]] = {
    "b-claims-by-region": {
        "metric_id": "claims_filed_count",
        "dimensions": ["region"],
        "time_range": "last_30d",
    },
    "b-claims-by-channel": {
        "metric_id": "claims_filed_count",
        "dimensions": ["channel"],
        "time_range": "last_7d",
    },
    "b-paid-weekly": {"metric_id": "claims_paid_amount", "time_range": "last_90d", "grain": "week"},
    "b-paid-by-region": {
        "metric_id": "claims_paid_amount",
        "dimensions": ["region"],
        "time_range": "last_30d",
    },
    "b-avg-by-channel": {
        "metric_id": "avg_claim_amount",
        "dimensions": ["channel"],
        "time_range": "last_90d",
    },
    "b-avg-by-region": {
        "metric_id": "avg_claim_amount",
        "dimensions": ["region"],
        "time_range": "last_30d",
    },
    "b-alerts-by-service": {
        "metric_id": "alerts_raised_count",
        "dimensions": ["service"],
        "time_range": "last_7d",
    },
    "b-alerts-by-severity": {
        "metric_id": "alerts_raised_count",
        "dimensions": ["severity"],
        "time_range": "last_30d",
    },
    "b-mttr-by-severity": {
        "metric_id": "alert_mttr_minutes",
        "dimensions": ["severity"],
        "time_range": "last_30d",
    },
    "b-mttr-by-service": {
        "metric_id": "alert_mttr_minutes",
        "dimensions": ["service"],
        "time_range": "last_7d",
    },
    "b-devices-by-maker": {
        "metric_id": "devices_enrolled_count",
        "dimensions": ["manufacturer"],
        "time_range": "all",
    },
    "b-devices-total": {"metric_id": "devices_enrolled_count", "time_range": "all"},
}


# ------------------------------------------------------------------ the warehouse process


def _warehouse(conn: Any, delay_s: float) -> None:
    """Child process: the Statement Execution server; commands arrive on `conn`."""
    from datetime import UTC, datetime

    import duckdb

    from adapters.lakehouse import build_lakehouse
    from fakes.databricks_sea import FakeSeaServer

    con = duckdb.connect()
    build_lakehouse(con, now=datetime.now(UTC))
    srv = FakeSeaServer(con, token=TOKEN, max_wait_s=delay_s + 2.0)
    srv.statement_delay_s = delay_s
    srv.start()
    conn.send(srv.port)
    while True:
        cmd = conn.recv()
        if cmd == "fail":
            srv.http_status = 503
            conn.send(time.time())
        elif cmd == "recover":
            srv.http_status = None
            conn.send(time.time())
        elif cmd == "stats":
            conn.send(
                {
                    "statements": [
                        (s.statement, s.request.get("query_tags"), s.ready_at)
                        for s in srv.statements
                    ],
                    "refused": sum(
                        1
                        for r in srv.requests
                        if r.status == 503 and r.method == "POST" and r.path.endswith("/statements")
                    ),
                    "clock": time.monotonic(),
                    "wall": time.time(),
                }
            )
        elif cmd == "stop":
            srv.stop()
            conn.send("stopped")
            return


# ------------------------------------------------------------------ setup


def write_config(dst: Path) -> Path:
    config = dst / "config"
    shutil.copytree(ROOT / "config", config)
    routing_path = config / "metric_routing.yaml"
    routing = yaml.safe_load(routing_path.read_text())
    for metric, ttl in TTLS.items():
        routing["metrics"][metric]["ttl_seconds"] = ttl
    routing_path.write_text(yaml.safe_dump(routing, sort_keys=False))
    widgets_path = config / "widgets.yaml"
    widgets = yaml.safe_load(widgets_path.read_text())
    for wid, intent in DASHBOARD.items():
        widgets["widgets"][wid] = {
            "title": wid,
            "kind": "bar",
            "data_intent": intent,
            "mock_data": [{"value": -1}],
        }
    widgets_path.write_text(yaml.safe_dump(widgets, sort_keys=False))
    return config


def free_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"instance {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=10) as r:
                if json.loads(r.read())["components"]["warehouse"]["ok"]:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"instance {url} did not come up")


# ------------------------------------------------------------------ viewers


async def viewer(
    i: int,
    host: str,
    port: int,
    body: bytes,
    t0: float,
    until: float,
    interval: float,
    out: list[Sample],
) -> None:
    rnd = random.Random(i)
    await asyncio.sleep(rnd.uniform(0, interval))  # viewers arrive spread over one interval
    conn: Conn | None = None
    while time.perf_counter() < until:
        started = time.perf_counter()
        try:
            if conn is None:
                conn = await Conn.open(host, port)
            status, payload = await conn.post("/v1/widgets/data", body)
            ms = (time.perf_counter() - started) * 1000
            results = json.loads(payload).get("results", []) if status == 200 else []
            out.append(Sample(time.perf_counter() - t0, ms, status, results))
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            out.append(Sample(time.perf_counter() - t0, 0.0, 0, [], repr(exc)))
            if conn is not None:
                conn.close()
            conn = None
        await asyncio.sleep(
            max(0.0, interval * rnd.uniform(0.8, 1.2) - (time.perf_counter() - started))
        )
    if conn is not None:
        conn.close()


# ------------------------------------------------------------------ main


async def run_viewers(urls: list[str], args: argparse.Namespace, t0: float) -> list[Sample]:
    body = json.dumps({"widget_ids": list(DASHBOARD)}).encode()
    out: list[Sample] = []
    until = t0 + args.duration
    tasks = []
    for i in range(args.viewers):
        host_port = urls[i % len(urls)].removeprefix("http://")
        host, port = host_port.split(":")
        tasks.append(viewer(i, host, int(port), body, t0, until, args.interval, out))
    await asyncio.gather(*tasks)
    return out


async def main_async(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="wdr-bench-scale-"))
    dbname = f"wdr_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{dbname}"')
    db_url = PG_ADMIN_URL.rpartition("/")[0] + "/" + dbname
    parent, child = mp.Pipe()
    wh = mp.get_context("spawn").Process(target=_warehouse, args=(child, args.delay), daemon=True)
    wh.start()
    wh_port = parent.recv()
    config = write_config(tmp)
    prefix = f"wdr-bench:{uuid.uuid4().hex[:8]}:"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "BEDROCK_"))}
    env |= {
        "DATABASE_URL": db_url,
        "SEED_DEMO": "true",  # a fresh database: the demo catalog and widgets
        "REDIS_URL": REDIS_URL,
        "CACHE_PREFIX": prefix,
        "CONFIG_DIR": str(config),
        "DATA_DIR": str(tmp / "data"),
        "DATABRICKS_HOST": f"http://127.0.0.1:{wh_port}",
        "DATABRICKS_HTTP_PATH": "/sql/1.0/warehouses/f4ke0wareh0use01",
        "DATABRICKS_TOKEN": TOKEN,
        "DATABRICKS_TRANSPORT": "sea",
        "DATABRICKS_QUERY_TIMEOUT_S": "10",
        "LOG_LEVEL": "WARNING",
        # 4 instances and 100 viewers share 2 cores here: an event loop can lag past the
        # default 0.1 s Redis timeout, which trips the cache's breaker (a miss for 5 s)
        "CACHE_SOCKET_TIMEOUT_S": os.environ.get("BENCH_CACHE_TIMEOUT_S", "0.5"),
    }
    resolver = str(Path(sys.executable).parent / "resolver")
    procs: list[subprocess.Popen[bytes]] = []
    urls = []
    try:
        for i in range(args.instances):
            port = free_port()
            log = (tmp / f"instance{i}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [resolver, "serve"], env=env | {"PORT": str(port)}, stdout=log, stderr=log
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
            wait_ready(urls[-1], procs[-1])  # one at a time: the first migrates and seeds
        print(
            f"{args.instances} instances up; warehouse on :{wh_port} ({args.delay:g} s per statement)"
        )
        parent.send("stats")
        before = parent.recv()
        t0 = time.perf_counter()
        t0_wall = time.time()

        async def outage() -> tuple[float, float]:
            await asyncio.sleep(args.outage_at)
            parent.send("fail")
            fail_wall = parent.recv()
            print(f"t={time.perf_counter() - t0:5.1f}s warehouse failing (HTTP 503)")
            await asyncio.sleep(args.outage_s)
            parent.send("recover")
            back_wall = parent.recv()
            print(f"t={time.perf_counter() - t0:5.1f}s warehouse back")
            return fail_wall - t0_wall, back_wall - t0_wall

        samples, window = await asyncio.gather(run_viewers(urls, args, t0), outage())
        parent.send("stats")
        stats = parent.recv()
        stats["statements"] = stats["statements"][len(before["statements"]) :]
        stats["refused"] -= before["refused"]
        res = report(
            samples,
            stats,
            dashboard=DASHBOARD,
            ttls=TTLS,
            t0_wall=t0_wall,
            outage=window,
            duration=args.duration,
        )
    finally:
        warnings = sum(
            (tmp / f"instance{i}.log").read_text(errors="replace").count("WARNING")
            for i in range(len(procs))
        )
        print(f"instance log warnings: {warnings}")
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        parent.send("stop")
        parent.recv()
        wh.join(10)
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        if os.environ.get("BENCH_KEEP"):
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print_report(res, args, len(DASHBOARD))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--instances", type=int, default=4)
    p.add_argument("--viewers", type=int, default=100)
    p.add_argument("--interval", type=float, default=3.0, help="seconds between a viewer's loads")
    p.add_argument("--duration", type=float, default=120.0)
    p.add_argument("--outage-at", type=float, default=45.0)
    p.add_argument("--outage-s", type=float, default=30.0)
    p.add_argument("--delay", type=float, default=1.0, help="seconds per warehouse statement")
    args = p.parse_args()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
