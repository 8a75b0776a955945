"""The HTTP side of `bench/bench_cost.py`: a lean keep-alive client with a bearer token,
the viewers, and the watchers that time how long a change takes to show."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from typing import Any

from cost_fleet import Fleet

# ------------------------------------------------------------------ a lean HTTP client


class Conn:
    def __init__(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, host: str) -> None:
        self.r, self.w, self.host = r, w, host

    @classmethod
    async def open(cls, url: str) -> Conn:
        host, port = url.removeprefix("http://").split(":")
        r, w = await asyncio.open_connection(host, int(port))
        return cls(r, w, f"{host}:{port}")

    async def post(self, path: str, body: bytes, token: str) -> tuple[int, bytes]:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.w.write(head + body)
        status = int((await self.r.readline()).split()[1])
        length = 0
        while True:
            line = await self.r.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.decode().partition(":")
            if k.lower() == "content-length":
                length = int(v)
        return status, await self.r.readexactly(length)

    def close(self) -> None:
        self.w.close()


async def load(conn: Conn, widgets: list[str], token: str) -> dict[str, Any]:
    status, payload = await conn.post(
        "/v1/widgets/data", json.dumps({"widget_ids": widgets}).encode(), token
    )
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {payload[:200]!r}")
    return {r["widget_id"]: r for r in json.loads(payload)["results"]}


async def viewer(
    fleet: Fleet,
    url: str,
    token: str,
    widgets: list[str],
    interval: float,
    stop: asyncio.Event,
    seed: int,
) -> None:
    rnd = random.Random(seed)
    await asyncio.sleep(rnd.uniform(0, interval))
    conn = await Conn.open(url)
    try:
        while not stop.is_set():
            t = time.perf_counter()
            try:
                await load(conn, widgets, token)
                fleet.latencies.append((time.time(), (time.perf_counter() - t) * 1000))
            except (OSError, RuntimeError, asyncio.IncompleteReadError, ValueError):
                fleet.errors += 1
                conn.close()
                conn = await Conn.open(url)
            left = interval * rnd.uniform(0.8, 1.2) - (time.perf_counter() - t)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, left))
    finally:
        conn.close()


async def snapshot(fleet: Fleet, widgets: list[str], toks: dict[str, str]) -> dict[Any, Any]:
    out = {}
    for who, tok in toks.items():
        for url in fleet.urls:
            conn = await Conn.open(url)
            try:
                got = await load(conn, widgets, tok)
            finally:
                conn.close()
            for w in widgets:
                out[(who, url, w)] = got[w]["data"]
    return out


async def time_to_change(
    fleet: Fleet,
    widgets: list[str],
    toks: dict[str, str],
    before: dict[Any, Any],
    since: float,
    limit_s: float,
    poll_s: float,
) -> dict[tuple[str, str, str], float | None]:
    seen: dict[tuple[str, str, str], float | None] = {k: None for k in before}

    async def watch(who: str, url: str) -> None:
        conn = await Conn.open(url)
        try:
            while time.time() - since < limit_s:
                got = await load(conn, widgets, toks[who])
                at = time.time() - since
                for w in widgets:
                    k = (who, url, w)
                    if seen[k] is None and got[w]["data"] != before[k]:
                        seen[k] = at
                if all(seen[(who, url, w)] is not None for w in widgets):
                    return
                await asyncio.sleep(poll_s)
        finally:
            conn.close()

    await asyncio.gather(*(watch(who, url) for who in toks for url in fleet.urls))
    return seen


async def rollup_latencies(url: str, widgets: list[str], token: str, n: int) -> dict[str, Any]:
    """`refresh=true` answers (no cache: the rollup read itself) of every widget a rollup
    answers, `n` each, sequentially on one connection: their latencies (ms)."""
    conn = await Conn.open(url)
    out: dict[str, Any] = {"widgets": [], "ms": []}
    body = json.dumps({"refresh": True}).encode()
    try:
        for w in widgets:
            status, payload = await conn.post(f"/v1/widgets/{w}/data", body, token)
            if status != 200 or json.loads(payload).get("source") != "rollup":
                continue
            out["widgets"].append(w)
            for _ in range(n):
                t = time.perf_counter()
                status, payload = await conn.post(f"/v1/widgets/{w}/data", body, token)
                ms = (time.perf_counter() - t) * 1000
                if status == 200 and json.loads(payload).get("source") == "rollup":
                    out["ms"].append(ms)
    finally:
        conn.close()
    return out
