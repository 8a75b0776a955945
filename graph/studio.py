"""The graph as `langgraph dev` (LangGraph Studio) loads it: see langgraph.json.

The dev server cannot hand our clients to each run, so this factory opens the same
resources the HTTP service opens (from Settings: embedded defaults unless configured),
once per server process, and returns the graph compiled without a checkpointer, bound
to that context. Run: `make studio`.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from graph.builder import build_graph
from graph.context import Context


class _StudioHost:
    """Holds the resources the dev server's runs share."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._stack: AsyncExitStack | None = None
        self._context: Context | None = None

    async def context(self) -> Context:
        async with self._lock:
            if self._context is None:
                from service.resources import open_resources
                from service.settings import Settings

                stack = AsyncExitStack()
                resources = await stack.enter_async_context(open_resources(Settings()))
                self._stack, self._context = stack, resources.context
            return self._context


_host = _StudioHost()


async def make_graph() -> CompiledStateGraph[Any, Any, Any, Any]:
    """Graph factory for langgraph.json."""
    return build_graph(bind_context=await _host.context()).compile()
