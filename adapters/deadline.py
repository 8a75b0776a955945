"""Client-side deadlines for calls to the outside world.

`within(seconds, awaitable, on_timeout=...)` runs the call as its own task and waits at
most `seconds` for it. When the deadline fires the caller gets `on_timeout()` at once;
the call is cancelled in the background (psycopg then sends PostgreSQL a cancel request
and closes a connection the server does not release), so no caller waits for a slow or
silent link to wind down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from observability.redact import loggable_error

T = TypeVar("T")
log = logging.getLogger(__name__)
_winding_down: set[asyncio.Future[object]] = set()


def _forget(task: asyncio.Future[object]) -> None:
    _winding_down.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.debug("abandoned call ended with %s", loggable_error(task.exception()))  # type: ignore[arg-type]


def _abandon(task: asyncio.Future[T]) -> None:
    task.cancel()
    _winding_down.add(task)  # type: ignore[arg-type]
    task.add_done_callback(_forget)  # type: ignore[arg-type]


async def within(
    seconds: float, call: Awaitable[T], *, on_timeout: Callable[[], BaseException]
) -> T:
    task = asyncio.ensure_future(call)
    try:
        return await asyncio.wait_for(asyncio.shield(task), seconds)
    except TimeoutError:
        _abandon(task)
        raise on_timeout() from None
    except asyncio.CancelledError:
        _abandon(task)
        raise


async def cancel_and_wait(task: asyncio.Future[Any], *, every_s: float = 1.0) -> None:
    """Cancel `task` and wait until it has ended, cancelling it again every `every_s`
    while it runs on: on Python < 3.12 `asyncio.wait_for` (used by `within`, psycopg, the
    Redis client) swallows a cancellation that arrives as its call completes, and a task
    that loops forever would then never end, and its stopper never return."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=every_s)
    exc = None if task.cancelled() else task.exception()
    if exc is not None:
        log.debug("stopped task ended with %s", loggable_error(exc))


def winding_down() -> int:
    """Abandoned calls still finishing in the background (tests, observability)."""
    return len(_winding_down)
