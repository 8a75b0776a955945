"""`RegistryListener`: LISTEN on `CHANNEL` over its own connection and call `on_change`
with that connection after every (re)connect and every burst of notifications.

It reconnects with exponential backoff (`backoff_min_s` .. `backoff_max_s`) and asks
for a full reload after each (re)connect (notifications sent while it was away are lost);
every `ping_interval_s` without notifications it checks its connection, so a dead link
is noticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg import sql

from adapters.registry.store import CHANNEL
from domain.failures import PostgresFailure

logger = logging.getLogger("adapters.registry")

OnChange = Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]


class RegistryListener:
    def __init__(
        self,
        conninfo: str,
        on_change: OnChange,
        *,
        connect_timeout_s: float = 2.0,
        backoff_min_s: float = 0.25,
        backoff_max_s: float = 10.0,
        ping_interval_s: float = 15.0,
    ) -> None:
        self.conninfo = conninfo
        self._on_change = on_change
        self._connect_timeout_s = connect_timeout_s
        self._backoff_min_s = backoff_min_s
        self._backoff_max_s = backoff_max_s
        self._ping_interval_s = ping_interval_s
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    @property
    def listening(self) -> bool:
        """True while the listener holds a live LISTEN connection."""
        return self._listening.is_set()

    async def wait_listening(self, timeout: float) -> None:
        await asyncio.wait_for(self._listening.wait(), timeout)

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._listen_forever(), name="registry-listener")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._listening.clear()

    async def _listen_forever(self) -> None:
        delay = self._backoff_min_s
        while True:
            try:
                await self._listen_once()
            # PostgreSQL gone or failing; ValueError: the routing YAML became invalid.
            except (psycopg.Error, PostgresFailure, OSError, ValueError) as exc:
                logger.warning("registry listener: %s; retrying in %.2fs", exc, delay)
            if self._listening.is_set():  # it had worked: start the backoff afresh
                delay = self._backoff_min_s
            self._listening.clear()
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self._backoff_max_s)

    async def _listen_once(self) -> None:
        async with await psycopg.AsyncConnection.connect(
            self.conninfo,
            autocommit=True,
            connect_timeout=max(1, round(self._connect_timeout_s)),
        ) as conn:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
            # Anything may have changed while we were not listening: reload in full.
            await self._on_change(conn)
            self._listening.set()
            while True:
                got = False
                async for _ in conn.notifies(timeout=self._ping_interval_s, stop_after=1):
                    got = True
                if got:
                    # Coalesce a burst (e.g. a seed touching many rows) into one reload.
                    async for _ in conn.notifies(timeout=0.05):
                        pass
                    await self._on_change(conn)
                else:
                    await conn.execute("SELECT 1")
