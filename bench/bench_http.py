"""HTTP latency and throughput against a running service (not a test).

    python bench/bench_http.py --url http://127.0.0.1:8000 [--widget open-issues-kpi]

Measures, with a lean keep-alive HTTP/1.1 client so the client costs little:
- sequential cache-hit latency (median, p95) and, interleaved with it on the same
  connection, the service's own floor (GET /healthz: no auth, no graph), and their ratio
  (target: a hit within 2x of /healthz),
- sequential `refresh=true` Postgres resolution latency (median, p95),
- sequential `refresh=true` warehouse resolution latency (compile + check + execute),
- cache-hit throughput at concurrency 8 (requests/s), each connection on its own widget,
  and all on one widget (where single flight coalesces concurrent identical requests).
Targets on a 2-core machine: hit median <= 3 ms, Postgres median <= 6 ms, >= 400 req/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from urllib.parse import urlparse


class Conn:
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str
    ) -> None:
        self.r, self.w, self.host = reader, writer, host

    @classmethod
    async def open(cls, host: str, port: int) -> Conn:
        r, w = await asyncio.open_connection(host, port)
        return cls(r, w, f"{host}:{port}")

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.w.write(head + body)
        return await self._response()

    async def get(self, path: str) -> tuple[int, bytes]:
        self.w.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        return await self._response()

    async def _response(self) -> tuple[int, bytes]:
        status_line = await self.r.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.r.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.decode().partition(":")
            if k.lower() == "content-length":
                length = int(v)
        payload = await self.r.readexactly(length)
        return status, payload

    def close(self) -> None:
        self.w.close()


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


async def floor(conn: Conn, n: int) -> list[float]:
    """The service's own floor: GET /healthz (no auth, no graph), on the same connection."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        status, payload = await conn.get("/healthz")
        out.append((time.perf_counter() - t0) * 1000)
        assert status == 200, payload
    return out


async def sequential(conn: Conn, path: str, body: bytes, n: int, check: str) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        status, payload = await conn.post(path, body)
        out.append((time.perf_counter() - t0) * 1000)
        assert status == 200, payload
        doc = json.loads(payload)
        assert doc["live_data_unavailable"] is False, doc
        if check == "hit":
            assert doc["cache_hit"] is True, doc
        else:
            assert doc["cache_hit"] is False and doc["source"] == check, doc
    return out


DISTINCT_WIDGETS = (
    "open-issues-kpi",
    "issues-by-severity",
    "claims-in-progress-trend",
    "cost-avoided-mtd",
    "critical-alerts-15m",
    "nba-taken-by-channel",
    "claims-filed-by-region",
    "claims-paid-weekly",
)


async def throughput(
    host: str, port: int, paths: list[str], concurrency: int, seconds: float
) -> float:
    """Requests/s with `concurrency` keep-alive connections; connection i asks for paths[i % n]."""
    conns = [await Conn.open(host, port) for _ in range(concurrency)]
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(i: int, c: Conn) -> None:
        nonlocal done
        path = paths[i % len(paths)]
        while time.perf_counter() < deadline:
            status, payload = await c.post(path, b"{}")
            assert status == 200 and b'"cache_hit":true' in payload, payload[:200]
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(i, c) for i, c in enumerate(conns)))
    elapsed = time.perf_counter() - t0
    for c in conns:
        c.close()
    return done / elapsed


async def main_async(args: argparse.Namespace) -> dict[str, float]:
    u = urlparse(args.url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    path = f"/v1/widgets/{args.widget}/data"
    conn = await Conn.open(host, port)
    await conn.post(path, b'{"refresh": true}')  # warm the cache
    # warm-up, so both sides are measured in the steady state (a process just started
    # is still finishing its boot's background work: the registry listener, the first
    # probes, refresh-ahead's first pass)
    for _ in range(5):
        await sequential(conn, path, b"{}", 100, "hit")
        await floor(conn, 100)
    # side by side, interleaved in rounds, so a busy moment weighs on both alike
    hits: list[float] = []
    healthz: list[float] = []
    for _ in range(10):
        hits += await sequential(conn, path, b"{}", args.n // 10, "hit")
        healthz += await floor(conn, args.n // 10)
    pg = await sequential(conn, path, b'{"refresh": true}', args.n, "postgres")
    wh_path = f"/v1/widgets/{args.warehouse_widget}/data"
    wh = await sequential(conn, wh_path, b'{"refresh": true}', max(20, args.n // 5), "databricks")
    conn.close()
    # distinct widgets per connection: no two requests in flight share a resolution, so
    # single flight (which coalesces identical concurrent requests) does not flatter the number
    distinct = [f"/v1/widgets/{w}/data" for w in DISTINCT_WIDGETS]
    conn = await Conn.open(host, port)
    for p in distinct:
        await conn.post(p, b'{"refresh": true}')
    conn.close()
    rps = await throughput(host, port, distinct, args.concurrency, args.seconds)
    same = await throughput(host, port, [path], args.concurrency, args.seconds)
    return {
        "healthz_median_ms": statistics.median(healthz),
        "cache_hit_median_ms": statistics.median(hits),
        "cache_hit_over_healthz": statistics.median(hits) / statistics.median(healthz),
        "cache_hit_p95_ms": pct(hits, 95),
        "postgres_median_ms": statistics.median(pg),
        "postgres_p95_ms": pct(pg, 95),
        "warehouse_median_ms": statistics.median(wh),
        "warehouse_p95_ms": pct(wh, 95),
        f"cache_hit_rps_c{args.concurrency}": rps,
        f"cache_hit_rps_c{args.concurrency}_same_widget": same,
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--widget", default="open-issues-kpi")
    p.add_argument("--warehouse-widget", default="claims-filed-by-region")
    p.add_argument("-n", type=int, default=300)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--seconds", type=float, default=5.0)
    args = p.parse_args()
    res = asyncio.run(main_async(args))
    targets = {
        "cache_hit_median_ms": ("<=", 3.0),
        "cache_hit_over_healthz": ("<=", 2.0),
        "postgres_median_ms": ("<=", 6.0),
        f"cache_hit_rps_c{args.concurrency}": (">=", 400.0),
    }
    for k, v in res.items():
        t = targets.get(k)
        mark = ""
        if t:
            ok = v <= t[1] if t[0] == "<=" else v >= t[1]
            mark = f"  (target {t[0]} {t[1]:g}: {'met' if ok else 'MISSED'})"
        print(f"{k:28s} {v:9.2f}{mark}")


if __name__ == "__main__":
    main()
