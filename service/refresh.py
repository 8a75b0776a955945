"""Background refreshes: stale-while-revalidate and refresh-ahead.

After every resolution the resolver hands the graph's `freshness` hint here:
- `revalidate` (a stale answer was served, or a failure's backoff is over): one background
  refresh of that key starts now;
- refresh-ahead: every key served from the cache within its last TTL is kept, at most `max_keys` of them (the least recently read go
  first), and re-resolved about one backend duration before it expires, so the new answer
  lands as the old one expires and hot tiles never make a viewer wait. An entry nobody
  read is not refreshed, and a key nobody reads for a whole TTL is dropped.
At most `max_concurrency` background refreshes run at once in a process; a refresh that
would exceed that is skipped (the next read or tick asks again). Each refresh is a graph
run with `background=true`: under the key's lease, so a fleet refreshes each entry once
(the others skip), and skipped when the entry is fresh enough or a failure's backoff runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from domain.freshness import Freshness

log = logging.getLogger("resolver.refresh")

RunFn = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass
class _Tracked:
    inputs: dict[str, Any]
    expires_at: float
    read_window_s: float
    last_read: float
    estimate_s: float
    not_before: float = 0.0  # after a refresh that found nothing to do (busy, backoff)
    durations: deque[float] = field(default_factory=lambda: deque(maxlen=5))

    def observe(self, seconds: float) -> None:
        """A live resolution of this key took `seconds`. The estimate is the shortest of
        the last few: starting early by one slow run's time (it waited on a lease, a
        thread, a busy loop) would land the refresh before the entry expires, a second
        statement inside one TTL; starting a little late only serves a stale answer, flagged,
        for that moment."""
        self.durations.append(seconds)
        self.estimate_s = min(self.durations)


class Refresher:
    def __init__(
        self,
        run: RunFn,
        *,
        refresh_ahead: bool = True,
        max_concurrency: int = 4,
        max_keys: int = 1000,
        tick_s: float = 0.25,
        default_estimate_s: float = 0.5,
        retry_s: float = 1.0,
        clock: Callable[[], float] = time.time,
        holds: Callable[[Freshness], bool] | None = None,
    ) -> None:
        """`holds(hint)`: the answer stays fresh past its TTL (its data versions have not
        moved: service/changes.py), so it is not kept warm ahead of its expiry."""
        self._run = run
        self._holds = holds
        self._ahead = refresh_ahead
        self._max_concurrency = max(1, max_concurrency)
        self._max_keys = max(1, max_keys)
        self._tick = tick_s
        self._default_estimate = default_estimate_s
        self._retry_s = retry_s
        self._clock = clock
        self._tracked: OrderedDict[str, _Tracked] = OrderedDict()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self.started = 0  # background refreshes started (for tests and logs)

    # ---------------------------------------------------------------- hints

    def after(self, inputs: dict[str, Any], out: dict[str, Any]) -> None:
        """A foreground resolution finished: schedule what its hint asks for."""
        hint: Freshness | None = out.get("freshness")
        if hint is None:
            return
        key = hint.key
        now = self._clock()
        tracked = self._tracked.get(key)
        if tracked is not None and hint.live and hint.expires_at is not None:
            tracked.expires_at = hint.expires_at  # a tracked key answered live
            tracked.observe(_backend_seconds(out, tracked.estimate_s))
        if self._holds is not None and self._holds(hint):
            self._tracked.pop(key, None)  # nothing to re-run while its data does not change
        elif self._ahead and hint.hit and hint.ttl_s > 0 and hint.expires_at is not None:
            # read from the cache: keep it warm while it is read during each entry's life
            self._tracked[key] = _Tracked(
                inputs=inputs,
                expires_at=hint.expires_at,
                read_window_s=max(hint.ttl_s, 2 * self._tick),
                last_read=now,
                estimate_s=tracked.estimate_s if tracked else self._default_estimate,
                durations=tracked.durations if tracked else deque(maxlen=5),
            )
            self._tracked.move_to_end(key)
            while len(self._tracked) > self._max_keys:
                self._tracked.popitem(last=False)
            self._ensure_loop()
        if hint.revalidate:
            self._spawn(key, inputs, ahead_s=0.0)

    def tracked_keys(self) -> list[str]:
        return list(self._tracked)

    # ---------------------------------------------------------------- running

    def _spawn(self, key: str, inputs: dict[str, Any], *, ahead_s: float) -> bool:
        if key in self._running or len(self._running) >= self._max_concurrency:
            return False
        self.started += 1
        task = asyncio.create_task(self._refresh(key, inputs, ahead_s))
        self._running[key] = task
        task.add_done_callback(functools.partial(self._done, key))
        return True

    def _done(self, key: str, _task: asyncio.Task[None]) -> None:
        self._running.pop(key, None)

    async def _refresh(self, key: str, inputs: dict[str, Any], ahead_s: float) -> None:
        t0 = time.monotonic()
        try:
            out = await self._run(inputs | {"background": True, "ahead_s": ahead_s})
        except Exception:
            log.exception("background refresh of %s failed", key)
            return
        hint: Freshness | None = out.get("freshness")
        tracked = self._tracked.get(key)
        if (
            tracked is not None
            and hint is not None
            and self._holds is not None
            and self._holds(hint)
        ):
            del self._tracked[key]
        elif tracked is not None:
            if hint is not None and hint.expires_at is not None:
                tracked.expires_at = hint.expires_at
            if hint is not None and hint.live:
                tracked.observe(time.monotonic() - t0)
            else:  # skipped or failed: ask again a little later, not on every tick
                tracked.not_before = self._clock() + self._retry_s

    def _ensure_loop(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.create_task(self._ticks())

    async def _ticks(self) -> None:
        while self._tracked:
            await asyncio.sleep(self._tick)
            self.tick()

    def tick(self) -> None:
        """Drop keys nobody read for a window; refresh those about to expire."""
        now = self._clock()
        for key, t in list(self._tracked.items()):
            if now - t.last_read > t.read_window_s:
                del self._tracked[key]
                continue
            read_this_entry = t.last_read >= t.expires_at - t.read_window_s
            # start about one backend duration ahead, so the new answer lands as the old one
            # expires (a little after rather than before: one statement per TTL, not more)
            if t.expires_at - now <= 0.9 * t.estimate_s and now >= t.not_before and read_this_entry:
                self._spawn(key, t.inputs, ahead_s=t.estimate_s)

    async def aclose(self) -> None:
        tasks = [*self._running.values()]
        if self._loop_task is not None:
            tasks.append(self._loop_task)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tracked.clear()


def _backend_seconds(out: dict[str, Any], default: float) -> float:
    """How long the backend part of a live resolution took (from its trace)."""
    ms = sum(
        t["ms"] for t in out.get("trace", []) if t["node"] not in ("route", "degrade_or_return")
    )
    return ms / 1000 if ms > 0 else default
