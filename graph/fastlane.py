"""The fast lane: answers read from the cache, by the graph's own nodes, without the Pregel
loop.

A compiled graph run costs about 2 ms here (the loop's channels, checkpoints and callbacks on
every step) where the nodes of a cache answer take about 0.1 ms, and a dashboard many people
watch is mostly answered from the cache. So the resolver first walks the graph's own edge
table (graph/routing.py::NEXT) over the nodes that only read:

    route -> cache_probe (cache_lookup where it only reads) -> [mock_data] -> degrade_or_return

which covers a fresh hit, a stale answer (its background refresh is the service's, as for a
graph run) and a last good answer beside a failure note. Where the walk would reach any
other node (a miss needs the lease and the backend), or for `refresh`, a dry run or a
background refresh, it stops before any side effect and the graph runs from the start: the
lane never changes an answer. It gives the graph's response, trace and freshness, and the
same node metrics and spans, replayed through the observer once the lane has answered.
"""

from __future__ import annotations

import time
from typing import Any

from langgraph.graph import END
from langgraph.runtime import Runtime

from graph.context import Context
from graph.observe import GraphObserver
from graph.routing import NEXT
from nodes.cache_lookup import cache_probe
from nodes.degrade_or_return import degrade_or_return
from nodes.mock_data import mock_data
from nodes.route import route

# the nodes the lane may run: each reads only (degrade_or_return writes nothing for an
# answer that is not live: no entry, no note, no lease to release)
LANE: dict[str, Any] = {
    "route": route,
    "cache_lookup": cache_probe,
    "mock_data": mock_data,
    "degrade_or_return": degrade_or_return,
}


def _merge(state: dict[str, Any], update: dict[str, Any]) -> None:
    """Apply a node's update as the graph's channels would (`trace` appends)."""
    for k, v in update.items():
        state[k] = state.get("trace", []) + v if k == "trace" else v


async def answer_from_cache(
    graph_input: dict[str, Any], context: Context, observer: GraphObserver | None = None
) -> dict[str, Any] | None:
    """The graph's output (`response`, `trace`, `freshness`) when the cache answers a
    plain read; None, having done nothing, when the graph must run."""
    if graph_input.get("refresh") or graph_input.get("dry_run") or graph_input.get("background"):
        return None
    runtime: Runtime[Context] = Runtime(context=context)
    state: dict[str, Any] = dict(graph_input)
    ran: list[tuple[str, dict[str, Any], dict[str, Any], int, int]] = []
    name: str = "route"
    while name != END:
        node = LANE.get(name)
        if node is None:
            return None
        started = time.time_ns()
        update: dict[str, Any] = await node(state, runtime)
        ended = time.time_ns()
        if node is cache_probe and not update.get("cache_hit"):
            return None
        ran.append((name, dict(state), update, started, ended))
        _merge(state, update)
        after = NEXT[name]
        name = after if isinstance(after, str) else await after(state)  # type: ignore[arg-type]
    if observer is not None and observer.active:
        for step, before, update, started, ended in ran:
            observer.replay(step, before, update, context, started, ended)  # type: ignore[arg-type]
    out = {"response": state["response"], "trace": state["trace"]}
    if "freshness" in state:
        out["freshness"] = state["freshness"]
    return out
