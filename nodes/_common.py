"""What every node shares: timing into the trace, and recording a failure."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from langgraph.runtime import Runtime

from domain.failures import FailureKind, ResolverFailure
from graph.context import Context
from graph.state import Failure, State

NodeFn = Callable[[State, Runtime[Context]], Awaitable[dict[str, Any]]]


def traced(name: str) -> Callable[[NodeFn], NodeFn]:
    """Time a node and append `{node, ms, outcome}` to the trace. A node reports its
    outcome under the key `outcome` in its update (default "ok")."""

    def wrap(fn: NodeFn) -> NodeFn:
        @functools.wraps(fn)
        async def node(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
            t0 = time.perf_counter()
            update = await fn(state, runtime)
            outcome = update.pop("outcome", "ok")
            ms = round((time.perf_counter() - t0) * 1000, 3)
            update["trace"] = [{"node": name, "ms": ms, "outcome": outcome}]
            return update

        return node

    return wrap


def failed(node: str, exc: ResolverFailure) -> dict[str, Any]:
    return fail(node, exc.kind, exc.detail)


def fail(node: str, kind: FailureKind, detail: str) -> dict[str, Any]:
    failure: Failure = {"kind": kind, "detail": detail, "node": node}
    return {"failure": failure, "outcome": kind.value}
