"""The resolution graph.

    route -> cache_lookup -> (hit) degrade_or_return
                          -> postgres_query -> degrade_or_return
                          -> rollup_query -> (answered) degrade_or_return
                                          -> (else) sql_generate -> ...
                          -> sql_generate -> safety_check -> databricks_execute -> degrade_or_return
                                          -> (grounded in a PostgreSQL metric) postgres_query
    any failure -> mock_data -> degrade_or_return

`build_graph()` returns the uncompiled builder (tests compile it with their own context);
the service's runner (graph/runner.py) compiles it once at startup; `graph/studio.py`
exports it for `langgraph dev`. `node_table()` is the one table of (observed) node
functions: the builder adds them, the runner calls the same ones for the steps it runs.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from langgraph.graph import START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import TimeoutPolicy

from graph.context import Context
from graph.observe import GraphObserver
from graph.routing import NEXT
from graph.state import InputState, OutputState, State
from nodes.cache_lookup import cache_lookup
from nodes.databricks_execute import databricks_execute
from nodes.degrade_or_return import degrade_or_return
from nodes.mock_data import mock_data
from nodes.node_timeout import TIMEOUT_KINDS, node_timed_out
from nodes.postgres_query import postgres_query
from nodes.rollup_query import rollup_query
from nodes.route import route
from nodes.safety_check import safety_check
from nodes.sql_generate import sql_generate

# Every node, by name, in the order they are added.
NODES: dict[str, Any] = {
    "route": route,
    "cache_lookup": cache_lookup,
    "postgres_query": postgres_query,
    "rollup_query": rollup_query,
    "sql_generate": sql_generate,
    "safety_check": safety_check,
    "databricks_execute": databricks_execute,
    "mock_data": mock_data,
    "degrade_or_return": degrade_or_return,
}


ContextSource = Context | Callable[[], Awaitable[Context]]
NodeWrapper = Callable[[str, Any], Any]


def _bind(fn: Any, context: ContextSource) -> Any:
    """A node that runs `fn` with `context` (or the one `context()` gives when the node
    runs), whatever context the caller passed (Studio)."""

    @functools.wraps(fn)
    async def node(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        ctx = context if isinstance(context, Context) else await context()
        result: dict[str, Any] = await fn(state, runtime.override(context=ctx))
        return result

    return node


# Node deadlines (seconds) of the nodes that call the outside world: each call inside is
# bounded already (README "Time bounds"); these make the bound visible in the graph and
# turn an overrun into the path's timeout kind (nodes/node_timeout.py).
DEFAULT_NODE_TIMEOUTS: dict[str, float] = {
    "postgres_query": 10.0,
    "sql_generate": 60.0,
    "databricks_execute": 60.0,
}


def node_table(
    bind_context: ContextSource | None = None,
    observer: GraphObserver | None = None,
    wrap: NodeWrapper | None = None,
) -> dict[str, Any]:
    """Every node function as the graph runs it: bound to `bind_context` when given,
    wrapped once by `observer` (metrics, spans) when it is active, then by `wrap`."""
    table: dict[str, Any] = {}
    for name, fn in NODES.items():
        node = _bind(fn, bind_context) if bind_context else fn
        if observer is not None and observer.active:
            node = observer.wrap(name, node)
        if wrap is not None:
            node = wrap(name, node)
        table[name] = node
    return table


def build_graph(
    bind_context: ContextSource | None = None,
    *,
    observer: GraphObserver | None = None,
    node_timeouts: Mapping[str, float] | None = None,
    input_schema: type[Any] = InputState,
    output_schema: type[Any] = OutputState,
    wrap: NodeWrapper | None = None,
    nodes: Mapping[str, Any] | None = None,
    entry: str = "route",
) -> StateGraph[State, Context, InputState, OutputState]:
    """The uncompiled graph. `bind_context` fixes the context for hosts that cannot pass
    one per run (the `langgraph dev` server; a coroutine function: opened when a node
    first needs it); the service passes it to `ainvoke` instead.
    `observer` wraps every node once for metrics and spans (graph/observe.py); without
    one the nodes run bare (tests). `input_schema` (a part of InputState), `output_schema`
    (a superset of OutputState) and `wrap(name, node)` let a host show more of each step
    (graph/studio.py). `nodes` is a `node_table()` to reuse. `entry` other than `route`
    gives the same graph entered at that node, taking the whole state as input: the
    runner (graph/runner.py) hands a run on there once the steps before it are done."""
    # A bound graph takes no per-run context: the host may still pass `{}` (langgraph dev).
    builder = StateGraph(
        State,
        context_schema=None if bind_context else Context,
        input_schema=input_schema if entry == "route" else State,
        output_schema=output_schema,
    )
    timeouts = {**DEFAULT_NODE_TIMEOUTS, **(node_timeouts or {})}
    table = nodes if nodes is not None else node_table(bind_context, observer, wrap)
    for name, node in table.items():
        if name in TIMEOUT_KINDS:
            builder.add_node(  # type: ignore[call-overload]
                name,
                node,
                timeout=TimeoutPolicy(run_timeout=timeouts[name]),
                error_handler=node_timed_out,
            )
        else:
            builder.add_node(name, node)  # type: ignore[arg-type]

    builder.add_edge(START, entry)
    for name, after in NEXT.items():
        if isinstance(after, str):
            builder.add_edge(name, after)
        else:
            builder.add_conditional_edges(name, after)
    return builder
