"""node_timed_out: the error handler of the nodes that call the outside world. A node
that overruns its LangGraph `TimeoutPolicy` becomes that path's timeout failure kind and
the widget gets its flagged mock data; any other exception is a bug and fails the run."""

from __future__ import annotations

from langgraph.errors import NodeError, NodeTimeoutError
from langgraph.types import Command

from domain.failures import FailureKind
from graph.state import State
from nodes._common import fail

TIMEOUT_KINDS: dict[str, FailureKind] = {
    "postgres_query": FailureKind.postgres_timeout,
    "sql_generate": FailureKind.llm_timeout,
    "databricks_execute": FailureKind.databricks_timeout,
}


async def node_timed_out(state: State, error: NodeError) -> Command[str]:
    exc = error.error
    if not isinstance(exc, NodeTimeoutError) or error.node not in TIMEOUT_KINDS:
        raise exc
    update = fail(
        error.node,
        TIMEOUT_KINDS[error.node],
        f"{error.node} did not finish within its {exc.timeout:g}s node deadline",
    )
    outcome = update.pop("outcome")
    update["trace"] = [{"node": error.node, "ms": round(exc.elapsed * 1000, 3), "outcome": outcome}]
    return Command(update=update, goto="mock_data")
