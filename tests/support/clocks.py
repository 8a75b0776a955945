"""Waiting on conditions, not on time: a wall clock a test moves, and `until`."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


class FakeClock:
    """A wall clock a test moves (`advance`) instead of sleeping until a TTL has passed.
    It starts at the real time, so data seeded around now stays in range."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def until(
    condition: Callable[[], bool | Awaitable[bool]],
    *,
    timeout_s: float = 30.0,
    every_s: float = 0.002,
) -> None:
    """Wait for `condition()` to hold (polled on the event loop; it may be a coroutine
    function, e.g. a query), instead of sleeping for a time a loaded machine may not meet;
    fails after `timeout_s` (a generous bound, never an expectation of speed). `every_s`
    is only the polling pace (wider for a condition that costs a round trip)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s

    async def holds() -> bool:
        result = condition()
        return bool(await result) if inspect.isawaitable(result) else bool(result)

    while not await holds():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s:.0f}s")
        await asyncio.sleep(every_s)


async def next_turn() -> None:
    """Return once the event loop has run every callback scheduled before this call (a
    callback queued now runs after them, in order): for code that defers work to the
    loop's next turn (`loop.call_soon`). No clock involved."""
    loop = asyncio.get_running_loop()
    turned: asyncio.Future[None] = loop.create_future()
    loop.call_soon(turned.set_result, None)
    await turned
