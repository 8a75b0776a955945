"""Single flight with live node events.

Identical resolutions in flight at the same time in one process share one graph run. The run
is its own task, detached from every caller: a caller that goes away (a closed stream, a
cancelled request) stops waiting without cancelling the run others share. The run streams
node updates (graph/runner.py::GraphRunner.astream, as the graph's own `stream_mode="updates"`):
each node's `{node, ms, outcome}` trace entry is published as it finishes, so a stream
subscriber (even one that joins late) sees every node event in order, then the final answer.
Across processes the key's leadership scope (graph/runner.py) does the same.

A run nobody waits for any more still finishes (bounded by the backends' own timeouts) and
caches its answer for the next viewer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Hashable
from typing import Any, Protocol

from observability import metrics as m

log = logging.getLogger("resolver")


class Flight:
    """One shared graph run: its node events so far, then its output."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.done = False
        self.task: asyncio.Task[dict[str, Any]] | None = None
        self._wake = asyncio.Event()

    def publish(self, entries: list[dict[str, Any]]) -> None:
        if entries:
            self.events.extend(entries)
            self._wake.set()
            self._wake = asyncio.Event()

    def finish(self) -> None:
        self.done = True
        self._wake.set()

    async def node_events(self) -> AsyncIterator[dict[str, Any]]:
        """Every node event of the run, from the first, as they happen; ends with the run."""
        i = 0
        while True:
            while i < len(self.events):
                yield self.events[i]
                i += 1
            if self.done:
                return
            await self._wake.wait()

    async def result(self) -> dict[str, Any]:
        """The graph's output (`response`, `trace`). Cancelling the caller leaves the run be."""
        assert self.task is not None
        return await asyncio.shield(self.task)


class Runs(Protocol):
    """What runs a resolution: its node updates, `{node: update}`, as they happen (given
    a run already decided, GraphRunner.decide, from there on)."""

    def astream(
        self, graph_input: dict[str, Any], decided: Any = None
    ) -> AsyncIterator[dict[str, Any]]: ...


class Flights:
    """The in-flight table of one service instance."""

    def __init__(
        self,
        runner: Runs,
        *,
        on_result: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
    ) -> None:
        """`on_result(graph_input, output)` runs after every run that answered (the
        resolver's background refreshes: stale-while-revalidate, refresh-ahead)."""
        self.runner = runner
        self.on_result = on_result
        self.inflight: dict[Hashable, Flight] = {}
        self._tasks: set[asyncio.Task[dict[str, Any]]] = set()

    def join(self, key: Hashable, graph_input: dict[str, Any], decided: Any = None) -> Flight:
        """The run for `key`: the one in flight (counted as a follower) or a new one (from
        `decided` on, when the caller has taken it as far as its deciding read)."""
        flight = self.inflight.get(key)
        if flight is not None:
            m.SINGLEFLIGHT_FOLLOWERS.inc()
            return flight
        flight = Flight()
        self.inflight[key] = flight
        task = asyncio.get_running_loop().create_task(self._run(key, flight, graph_input, decided))
        flight.task = task
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return flight

    async def resolve(self, key: Hashable, graph_input: dict[str, Any]) -> dict[str, Any]:
        return await self.join(key, graph_input).result()

    def _done(self, task: asyncio.Task[dict[str, Any]]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # retrieved here so an abandoned run never logs "exception was never retrieved";
            # callers still waiting re-raise it
            log.debug("resolution failed: %r", task.exception())

    async def _run(
        self, key: Hashable, flight: Flight, graph_input: dict[str, Any], decided: Any
    ) -> dict[str, Any]:
        response: dict[str, Any] | None = None
        freshness: dict[str, Any] | None = None
        trace: list[dict[str, Any]] = []
        try:
            async for chunk in self.runner.astream(graph_input, decided):
                for update in chunk.values():
                    if not update:
                        continue
                    entries = update.get("trace") or []
                    trace.extend(entries)
                    if "response" in update:
                        response = update["response"]
                        freshness = update.get("freshness")
                    flight.publish(entries)
        finally:
            if self.inflight.get(key) is flight:
                del self.inflight[key]
            flight.finish()
        if response is None:
            raise RuntimeError("the graph finished without a response")
        out = {"response": response, "trace": trace}
        if freshness is not None:
            out["freshness"] = freshness
            if self.on_result is not None:
                self.on_result(graph_input, out)
        return out

    async def aclose(self, grace_s: float = 5.0) -> None:
        """At shutdown: let runs still going finish for up to `grace_s` (a cancelled run may
        leave its backend call running in a thread while the clients close under it), then
        cancel the rest."""
        tasks = list(self._tasks)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace_s)
        for t in pending:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
