"""The graph as `langgraph dev` (LangGraph Studio) loads it: see langgraph.json.

The dev server cannot hand our clients to each run, so this factory opens the same
resources the HTTP service opens (`service.wiring.open_resources`, from Settings:
embedded defaults unless configured), once per server process, and returns the graph
compiled without a checkpointer, bound to that context. `app` is a tiny ASGI app the dev
server mounts (langgraph.json `http.app`) only for its lifespan: the resources are
closed when the server stops. Run: `make studio`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from langgraph.graph.state import CompiledStateGraph
from starlette.applications import Starlette

from graph.builder import build_graph
from graph.context import Context


class _StudioHost:
    """Holds the resources the dev server's runs share, until `aclose()`."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._stack: AsyncExitStack | None = None
        self._context: Context | None = None

    async def context(self) -> Context:
        async with self._lock:
            if self._context is None:
                from service.settings import Settings
                from service.wiring import open_resources

                stack = AsyncExitStack()
                resources = await stack.enter_async_context(open_resources(Settings()))
                self._stack, self._context = stack, resources.context
            return self._context

    async def aclose(self) -> None:
        async with self._lock:
            stack, self._stack, self._context = self._stack, None, None
            if stack is not None:
                await stack.aclose()


_host = _StudioHost()


def _shared_host() -> _StudioHost:
    # The dev server loads this file by path for the graph and imports `graph.studio` for
    # the app: both must share the canonical module's host.
    import graph.studio as canonical

    return canonical._host


async def make_graph() -> CompiledStateGraph[Any, Any, Any, Any]:
    """Graph factory for langgraph.json."""
    return build_graph(bind_context=await _shared_host().context()).compile()


@asynccontextmanager
async def _lifespan(_app: Starlette) -> AsyncIterator[None]:
    yield
    await _shared_host().aclose()


app = Starlette(lifespan=_lifespan)
