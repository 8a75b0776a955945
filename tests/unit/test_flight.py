"""service/flight.py: single flight with node events, detached from its callers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from observability import metrics as m
from service.flight import Flights
from tests.support.clocks import until


class SteppedGraph:
    """A runner double (`astream`: `{node: update}` per step): one node per step, each step
    released by the test, so interleavings are deterministic; `done` counts finished steps."""

    def __init__(self, nodes: tuple[str, ...] = ("route", "cache_lookup", "degrade_or_return")):
        self.nodes = nodes
        self.gates = [asyncio.Event() for _ in nodes]
        self.runs = 0
        self.fail_at: str | None = None
        self.done = 0

    def release_all(self) -> None:
        for g in self.gates:
            g.set()

    async def astream(
        self, graph_input: dict[str, Any], decided: Any = None
    ) -> AsyncIterator[dict]:
        self.runs += 1
        for node, gate in zip(self.nodes, self.gates, strict=True):
            await gate.wait()
            if node == self.fail_at:
                raise RuntimeError("boom")
            update: dict[str, Any] = {"trace": [{"node": node, "ms": 1.0, "outcome": "ok"}]}
            if node == "degrade_or_return":
                update["response"] = {"widget_id": graph_input["widget_id"]}
            self.done += 1
            yield {node: update}


async def test_identical_requests_share_one_run_and_see_every_event() -> None:
    graph = SteppedGraph()
    flights = Flights(graph)
    first = flights.join("k", {"widget_id": "w"})
    graph.gates[0].set()
    await until(lambda: first.events != [])
    assert [e["node"] for e in first.events] == ["route"]  # `route` finished, no more
    late = flights.join("k", {"widget_id": "w"})  # joins after `route` finished
    assert late is first

    async def collect() -> list[str]:
        return [e["node"] async for e in late.node_events()]

    events = asyncio.create_task(collect())
    graph.release_all()
    out1, out2 = await asyncio.gather(first.result(), late.result())
    assert out1 is out2 and out1["response"] == {"widget_id": "w"}
    assert [t["node"] for t in out1["trace"]] == list(graph.nodes)
    assert await events == list(graph.nodes)  # the late subscriber got the backlog too
    assert graph.runs == 1 and flights.inflight == {}


async def test_a_waiter_that_goes_away_does_not_cancel_the_shared_run() -> None:
    followers = m.SINGLEFLIGHT_FOLLOWERS._value.get()
    graph = SteppedGraph()
    flights = Flights(graph)
    leaver = asyncio.create_task(flights.resolve("k", {"widget_id": "w"}))
    await until(lambda: graph.runs == 1)
    stayer = asyncio.create_task(flights.resolve("k", {"widget_id": "w"}))
    await until(lambda: m.SINGLEFLIGHT_FOLLOWERS._value.get() > followers)
    leaver.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaver
    graph.release_all()
    assert (await stayer)["response"] == {"widget_id": "w"}
    assert graph.runs == 1


async def test_a_run_nobody_waits_for_still_finishes() -> None:
    graph = SteppedGraph()
    flights = Flights(graph)
    waiter = asyncio.create_task(flights.resolve("k", {"widget_id": "w"}))
    await until(lambda: graph.runs == 1)
    waiter.cancel()
    flight = flights.inflight["k"]
    graph.release_all()
    assert flight.task is not None
    assert (await flight.task)["response"] == {"widget_id": "w"}
    assert flights.inflight == {}


async def test_a_failing_run_raises_in_every_waiter_and_ends_the_event_stream() -> None:
    graph = SteppedGraph()
    graph.fail_at = "cache_lookup"
    flights = Flights(graph)
    a = flights.join("k", {"widget_id": "w"})
    b = flights.join("k", {"widget_id": "w"})
    graph.release_all()
    assert [e["node"] async for e in a.node_events()] == ["route"]
    for f in (a, b):
        with pytest.raises(RuntimeError, match="boom"):
            await f.result()
    assert flights.inflight == {}
    # the next identical request starts afresh
    graph.fail_at = None
    assert (await flights.resolve("k", {"widget_id": "w"}))["response"] == {"widget_id": "w"}


async def test_different_keys_run_separately_and_aclose_cancels_runs_in_flight() -> None:
    graph = SteppedGraph()
    flights = Flights(graph)
    a = flights.join("a", {"widget_id": "a"})
    b = flights.join("b", {"widget_id": "b"})
    assert a is not b
    await until(lambda: graph.runs == 2)
    await flights.aclose(grace_s=0.05)  # stuck runs are cancelled after the grace period
    assert a.task is not None and a.task.cancelled()
    assert a.done and b.done


async def test_aclose_lets_runs_in_flight_finish_within_the_grace_period() -> None:
    graph = SteppedGraph()
    flights = Flights(graph)
    flight = flights.join("k", {"widget_id": "w"})
    asyncio.get_running_loop().call_later(0.05, graph.release_all)
    await flights.aclose(grace_s=5)
    assert flight.task is not None and not flight.task.cancelled()
    assert flight.task.result()["response"] == {"widget_id": "w"}
