"""The TCP proxy fake between a client and the real PostgreSQL: relays, cuts, slows down."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import psycopg
import pytest

from fakes.tcp_proxy import TcpProxy


def test_relays_cuts_and_adds_latency(pg_url: str) -> None:
    target = urlsplit(pg_url)
    with TcpProxy(target.hostname or "127.0.0.1", target.port or 5432) as proxy:
        url = proxy.url_for(pg_url)
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            proxy.latency_s = 0.2
            started = time.monotonic()
            assert conn.execute("SELECT 2").fetchone() == (2,)
            # one request and one reply, each held back 0.2 s: a lower bound, not a timing
            assert time.monotonic() - started >= 0.4
            proxy.latency_s = 0.0
            proxy.stop()
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 3")
        proxy.start()
        with psycopg.connect(url, autocommit=True) as again:
            assert again.execute("SELECT 4").fetchone() == (4,)


async def test_blackhole_swallows_without_closing_then_relays_again(pg_url: str) -> None:
    import asyncio

    target = urlsplit(pg_url)
    with TcpProxy(target.hostname or "127.0.0.1", target.port or 5432) as proxy:
        url = proxy.url_for(pg_url)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            proxy.blackhole = True
            with pytest.raises(TimeoutError):  # no answer, and no reset either
                await asyncio.wait_for(conn.execute("SELECT 1"), 1.0)
        with pytest.raises((TimeoutError, psycopg.OperationalError)):
            await asyncio.wait_for(psycopg.AsyncConnection.connect(url, connect_timeout=1), 3.0)
        proxy.blackhole = False
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as again:
            assert await (await again.execute("SELECT 5")).fetchone() == (5,)
