"""nodes/node_timeout.py: the error handler of the nodes that call the outside world."""

from __future__ import annotations

import pytest
from langgraph.errors import NodeError, NodeTimeoutError

from nodes.node_timeout import TIMEOUT_KINDS, node_timed_out


@pytest.mark.parametrize(("node", "kind"), sorted((n, k.value) for n, k in TIMEOUT_KINDS.items()))
async def test_a_timeout_becomes_the_nodes_failure_kind(node: str, kind: str) -> None:
    error = NodeTimeoutError(node, 1.5, kind="run", run_timeout=1.0)
    command = await node_timed_out({}, NodeError(node=node, error=error))
    assert command.goto == "mock_data"
    update = command.update
    assert update["failure"]["kind"] == kind and update["failure"]["node"] == node  # type: ignore[index]
    assert update["trace"][0]["outcome"] == kind  # type: ignore[index]


async def test_any_other_error_is_a_bug_and_re_raised() -> None:
    with pytest.raises(ZeroDivisionError):
        await node_timed_out({}, NodeError(node="postgres_query", error=ZeroDivisionError()))
    timeout = NodeTimeoutError("route", 2.0, kind="run", run_timeout=1.0)
    with pytest.raises(NodeTimeoutError):  # route has no timeout kind
        await node_timed_out({}, NodeError(node="route", error=timeout))
