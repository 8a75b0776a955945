"""The graph as `langgraph dev` (LangGraph Studio) loads it: see langgraph.json.

The dev server cannot hand our clients to each run, so the nodes take the resources the
HTTP service opens (`service.wiring.open_resources`, from Settings: embedded defaults
unless configured) from one host per server process, opened when a node first needs
them: loading the graph (the factory, the schemas, the input form) opens nothing. `app`
is a tiny ASGI app the dev server mounts (langgraph.json `http.app`) only for its
lifespan: the resources are closed, on the event loop that opened them, when the server
stops.

What Studio shows: the input form is `RequestInput` (widget id, refresh, dry run, an
optional inline spec, with descriptions); after each node, `decided` holds what the node
wrote to the state (row data as a count, as in LangSmith traces). Bad input is a
`ValueError` from `route` saying what is wrong (the dev server shows those messages). The checkpoint
types (`CHECKPOINT_TYPES`, the models the state holds) are registered with the
checkpointer's serializer (`checkpointer`, langgraph.json `checkpointer`), so
interrupting and resuming keeps working when LangGraph blocks unregistered types.
Run: `make studio`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import types
import typing
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel
from starlette.applications import Starlette

from graph.builder import build_graph
from graph.context import Context
from graph.state import RequestInput, State, StudioOutput

log = logging.getLogger(__name__)


class _StudioHost:
    """Holds the resources the dev server's runs share, until `aclose()`."""

    def __init__(self) -> None:
        self._opening: asyncio.Future[Context] | None = None
        self._stack: AsyncExitStack | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def context(self) -> Context:
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._open())
        return await asyncio.shield(self._opening)

    async def _open(self) -> Context:
        from service.settings import Settings
        from service.wiring import open_resources

        stack = AsyncExitStack()
        try:
            resources = await stack.enter_async_context(open_resources(Settings()))
        except BaseException:
            self._opening = None  # the next run tries again (and says why it failed)
            await stack.aclose()
            raise
        self._stack, self._loop = stack, asyncio.get_running_loop()
        return resources.context

    async def aclose(self) -> None:
        stack, loop = self._stack, self._loop
        self._stack = self._loop = self._opening = None
        if stack is None or loop is None:
            return
        if loop is asyncio.get_running_loop():
            await stack.aclose()
        elif loop.is_running():  # the runs' loop: the resources' connections live there
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(stack.aclose(), loop))
        else:
            log.warning("studio: the runs' event loop is gone; resources left to the OS")


_host = _StudioHost()


def _shared_host() -> _StudioHost:
    # The dev server loads this file by path for the graph and imports `graph.studio` for
    # the app: both must share the canonical module's host.
    import graph.studio as canonical

    return canonical._host


async def _context() -> Context:
    return await _shared_host().context()


# ------------------------------------------------------------------ what each node decided

# state keys a node's `decided` shows (the trace and the response are shown already)
DECISION_KEYS = (
    "backend",
    "generator",
    "cache_key",
    "cache_hit",
    "stale",
    "stale_reason",
    "candidate_sql",
    "generated_sql",
    "generation",
    "safety",
    "executed",
    "truncated",
    "skipped",
    "shared",
    "fallback",
    "failure",
)


def decided(update: dict[str, Any]) -> dict[str, Any]:
    """What a node's update decided, for Studio: the decision keys it wrote, the metric
    and routing by name and backend, a question's intent grounded in a PostgreSQL metric,
    and row data only as a count."""
    out: dict[str, Any] = {k: update[k] for k in DECISION_KEYS if k in update}
    if (metric := update.get("metric")) is not None:
        out["metric"] = getattr(metric, "name", metric)
    if (routing := update.get("routing")) is not None:
        out["routing"] = (
            routing.model_dump(mode="json") if isinstance(routing, BaseModel) else routing
        )
    if isinstance(grounded := update.get("grounded"), BaseModel):  # for postgres_query
        out["grounded"] = grounded.model_dump(mode="json", exclude_none=True)
    if isinstance(rows := update.get("rows"), list):
        out["rows"] = f"<{len(rows)} rows hidden>"
    if isinstance(last_good := update.get("last_good"), dict):
        out["last_good"] = f"<a last good answer: {len(last_good.get('rows') or [])} rows hidden>"
    return out


def _show_decisions(name: str, node: Any) -> Any:
    async def shown(state: State, runtime: Any) -> Any:
        update = await node(state, runtime)
        if isinstance(update, dict):
            update = update | {"decided": {"node": name, **decided(update)}}
        return update

    shown.__name__ = getattr(node, "__name__", name)
    return shown


# ------------------------------------------------------------------------------ the graph


async def make_graph() -> CompiledStateGraph[Any, Any, Any, Any]:
    """Graph factory for langgraph.json: builds the graph, opens nothing."""
    builder = build_graph(
        bind_context=_context,
        input_schema=RequestInput,
        output_schema=StudioOutput,
        wrap=_show_decisions,
    )
    return builder.compile()


def checkpoint_types(schema: Any = State) -> tuple[type[Any], ...]:
    """The classes (pydantic models and dataclasses) values of `schema` may hold, nested
    ones included: the types a checkpoint of the graph stores."""
    found: dict[type[Any], None] = {}

    def visit(tp: Any) -> None:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            visit(typing.get_args(tp)[0])
        elif origin is not None or isinstance(tp, types.UnionType):
            for arg in typing.get_args(tp):
                visit(arg)
        elif isinstance(tp, type) and tp not in found:
            if issubclass(tp, BaseModel):
                found[tp] = None
                for field in tp.model_fields.values():
                    visit(field.annotation)
            elif dataclasses.is_dataclass(tp):
                found[tp] = None
                hints = typing.get_type_hints(tp)
                for f in dataclasses.fields(tp):
                    visit(hints.get(f.name, Any))
            elif typing.is_typeddict(tp) or _is_te_typeddict(tp):
                for hint in typing.get_type_hints(tp, include_extras=True).values():
                    visit(hint)

    visit(schema)
    return tuple(found)


def _is_te_typeddict(tp: Any) -> bool:
    from typing_extensions import is_typeddict

    return bool(is_typeddict(tp))


CHECKPOINT_TYPES = checkpoint_types()


class StudioSaver(InMemorySaver):
    """LangGraph's in-memory checkpointer with what the dev server asks of a custom one:
    deleting a cancelled run's checkpoints (rollback) and pruning a thread's history."""

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        runs = set(map(str, run_ids))
        for thread_id, namespaces in list(self.storage.items()):
            for ns, checkpoints in namespaces.items():
                for checkpoint_id, (_c, metadata, _parent) in list(checkpoints.items()):
                    if str(self.serde.loads_typed(metadata).get("run_id")) in runs:
                        del checkpoints[checkpoint_id]
                        self.writes.pop((thread_id, ns, checkpoint_id), None)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        for thread_id in thread_ids:
            if strategy != "keep_latest":
                await self.adelete_thread(thread_id)
                continue
            for ns, checkpoints in self.storage.get(thread_id, {}).items():
                for checkpoint_id in sorted(checkpoints)[:-1]:  # ids sort by time
                    del checkpoints[checkpoint_id]
                    self.writes.pop((thread_id, ns, checkpoint_id), None)


def checkpointer() -> StudioSaver:
    """The dev server's checkpointer (langgraph.json `checkpointer.path`): in memory, its
    serializer told which of our types a checkpoint may hold."""
    return StudioSaver(serde=JsonPlusSerializer(allowed_msgpack_modules=CHECKPOINT_TYPES))


@asynccontextmanager
async def _lifespan(_app: Starlette) -> AsyncIterator[None]:
    yield
    await _shared_host().aclose()


app = Starlette(lifespan=_lifespan)
