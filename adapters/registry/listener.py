"""`RegistryListener`: LISTEN on `CHANNEL` over its own connection and call `on_change`
with that connection after every (re)connect (widget ids None: reload everything) and every
burst of notifications (the ids of the widgets they name, or None when a catalog entry
changed or the burst is large: a full reload is then cheaper than many single reads).

It reconnects with exponential backoff (`backoff_min_s` .. `backoff_max_s`) and asks
for a full reload after each (re)connect (notifications sent while it was away are lost);
every `ping_interval_s` without notifications it checks its connection with a
`ping_timeout_s` deadline (and TCP keepalives on the socket), so a silent, dead link is
noticed within `ping_interval_s + ping_timeout_s`; while it is not listening the registry
is reported stale (/readyz) and the last snapshot stays in service.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import psycopg
from psycopg import sql

from adapters.deadline import cancel_and_wait, within
from adapters.pg_connections import connection_keepalives
from adapters.registry.store import CHANNEL
from domain.failures import FailureKind, PostgresFailure

logger = logging.getLogger("adapters.registry")

# on_change(conn, widget ids changed, or None: reload everything)
OnChange = Callable[[psycopg.AsyncConnection[Any], frozenset[str] | None], Awaitable[None]]
MAX_SINGLE_READS = 64  # a burst naming more widgets than this is reloaded in full


def changed_widgets(payloads: Iterable[str]) -> frozenset[str] | None:
    """The widget ids a burst of `widgets:<id>` payloads names; None when anything else
    changed (a catalog entry, an unknown payload) or too many widgets did."""
    ids: set[str] = set()
    for payload in payloads:
        table, sep, key = payload.partition(":")
        if table != "widgets" or not sep or not key:
            return None
        ids.add(key)
    return frozenset(ids) if 0 < len(ids) <= MAX_SINGLE_READS else None


class RegistryListener:
    def __init__(
        self,
        conninfo: str,
        on_change: OnChange,
        *,
        connect_timeout_s: float = 2.0,
        backoff_min_s: float = 0.25,
        backoff_max_s: float = 2.0,
        ping_interval_s: float = 5.0,
        ping_timeout_s: float = 2.0,
        keepalives_idle_s: int = 5,
    ) -> None:
        self.conninfo = conninfo
        self._on_change = on_change
        self._connect_timeout_s = connect_timeout_s
        self._backoff_min_s = backoff_min_s
        self._backoff_max_s = backoff_max_s
        self._ping_interval_s = ping_interval_s
        self._ping_timeout_s = ping_timeout_s
        self._keepalives_idle_s = keepalives_idle_s
        self.dead_links = 0  # links dropped because a check got no answer in time
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
            await cancel_and_wait(task)  # a cancellation swallowed mid-loop is repeated
        self._listening.clear()

    def _dead(self, what: str) -> PostgresFailure:
        self.dead_links += 1
        self._listening.clear()  # stale from now on, not after the close
        return PostgresFailure(
            f"registry listener: no answer to the {what} within {self._ping_timeout_s:g}s",
            kind=FailureKind.postgres_timeout,
        )

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
        connect = psycopg.AsyncConnection.connect(
            self.conninfo,
            autocommit=True,
            application_name="resolver-registry-listener",
            **connection_keepalives(self._connect_timeout_s, self._keepalives_idle_s),
        )
        conn = await within(
            self._connect_timeout_s + self._ping_timeout_s,
            connect,
            on_timeout=lambda: self._dead("connect"),
        )
        async with conn:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
            # Anything may have changed while we were not listening: reload in full.
            await self._on_change(conn, None)  # bounded by the store's deadline
            self._listening.set()
            while True:
                payloads: list[str] = []
                async for note in conn.notifies(timeout=self._ping_interval_s, stop_after=1):
                    payloads.append(note.payload)
                if payloads:
                    # Coalesce a burst (e.g. a seed touching many rows) into one change.
                    async for note in conn.notifies(timeout=0.05):
                        payloads.append(note.payload)
                    await self._on_change(conn, changed_widgets(payloads))
                else:  # a silent link is noticed here, within interval + timeout
                    await within(
                        self._ping_timeout_s,
                        conn.execute("SELECT 1"),
                        on_timeout=lambda: self._dead("check"),
                    )
