"""`make bench-rollups`: how fast a rollup answers over HTTP (a benchmark, not a test).

Starts one `resolver serve` on the real PostgreSQL (a fresh database) and Redis, with the
embedded DuckDB lakehouse and ROLLUPS_ENABLED=true, waits until the rollups are built (a
widget answers with `source: rollup`), then measures sequentially, over a keep-alive
HTTP/1.1 connection, for each demo widget a rollup answers:
- `refresh=true` resolutions read from the rollup in PostgreSQL (a cache miss every time:
  route, cache lookup, rollup_query, the answer written to the cache), p50 and p99;
- the same widget's cache hits, for scale;
and the same widget resolved from the warehouse (ROLLUPS off) is not measured here: that
is `make bench` (embedded DuckDB) or `make bench-cost` (a ~1 s Statement Execution fake).
Target (issue 21): a rollup answer's p99 under 20 ms on an idle machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from bench_http import Conn, pct, sequential  # noqa: E402
from bench_scale import free_port, wait_ready  # noqa: E402

PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
WIDGETS = (
    "claims-paid-weekly",
    "avg-claim-amount-by-channel",
    "critical-alerts-by-service",
    "claims-filed-by-region",  # a distinct count, from claim_events_claims_daily's rows
)


async def until_rollup(conn: Conn, widget: str, timeout_s: float = 300) -> None:
    """Wait for the condition (the first build done), not for a time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status, payload = await conn.post(f"/v1/widgets/{widget}/data", b'{"refresh": true}')
        if status == 200 and json.loads(payload)["source"] == "rollup":
            return
        await asyncio.sleep(0.5)
    raise SystemExit(f"{widget} was not answered from a rollup within {timeout_s:g} s")


async def measure(port: int, n: int) -> dict[str, dict[str, float]]:
    conn = await Conn.open("127.0.0.1", port)
    out: dict[str, dict[str, float]] = {}
    try:
        for widget in WIDGETS:
            await until_rollup(conn, widget)
        for widget in WIDGETS:
            path = f"/v1/widgets/{widget}/data"
            rollup = await sequential(conn, path, b'{"refresh": true}', n, "rollup")
            hits = await sequential(conn, path, b"{}", n, "hit")
            out[widget] = {
                "rollup_p50": pct(rollup, 50),
                "rollup_p99": pct(rollup, 99),
                "hit_p50": pct(hits, 50),
                "hit_p99": pct(hits, 99),
            }
    finally:
        conn.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="requests per widget and kind")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="wdr-bench-rollups-"))
    dbname = f"wdr_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{dbname}"')
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABRICKS_", "BEDROCK_", "AUTH_"))
    } | {
        "DATABASE_URL": PG_ADMIN_URL.rpartition("/")[0] + "/" + dbname,
        "REDIS_URL": REDIS_URL,
        "CACHE_PREFIX": f"wdr-bench:{uuid.uuid4().hex[:8]}:",
        "DATA_DIR": str(tmp),
        "SEED_DEMO": "true",
        "ROLLUPS_ENABLED": "true",
        "REFRESH_MIN_INTERVAL_S": "0",  # every refresh=true resolves (no debounce)
        "REFRESH_AHEAD": "false",
        "METRICS_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
        "PORT": str(port),
    }
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve"], env=env, cwd=ROOT)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
        res = asyncio.run(measure(port, args.n))
    finally:
        proc.terminate()
        proc.wait(30)
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'widget':32} {'rollup p50 / p99 ms':>22} {'cache hit p50 / p99 ms':>24}")
    for widget, r in res.items():
        print(
            f"{widget:32} {r['rollup_p50']:>10.1f} / {r['rollup_p99']:<9.1f}"
            f" {r['hit_p50']:>11.1f} / {r['hit_p99']:<9.1f}"
        )
    print(f"load average: {os.getloadavg()[0]:.1f} (the target assumes an idle machine)")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
