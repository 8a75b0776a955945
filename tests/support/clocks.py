"""Waiting on conditions, not on time: a wall clock a test moves, and `until`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class FakeClock:
    """A wall clock a test moves (`advance`) instead of sleeping until a TTL has passed.
    It starts at the real time, so data seeded around now stays in range."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def until(condition: Callable[[], bool], *, timeout_s: float = 30.0) -> None:
    """Wait for `condition()` to hold (polled on the event loop), instead of sleeping for a
    time a loaded machine may not meet; fails after `timeout_s` (a generous bound, never
    an expectation of speed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s:.0f}s")
        await asyncio.sleep(0.002)
