"""Runs the compiled graph for the routes: single flight for resolutions, and the
dry-run path for SQL generation. No HTTP here: routes turn what this returns into
responses and problems."""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from domain.access import UNRESTRICTED, RowAccess
from domain.keys import access_fingerprint
from domain.models import DataIntent, WidgetSpec
from graph.builder import build_graph
from graph.context import Context

# What a generation needs back from the graph, besides the response.
GENERATION_KEYS = ("response", "failure", "safety", "candidate_sql", "generator", "generation")


class Resolver:
    def __init__(self, context: Context) -> None:
        self.context = context
        self.graph: CompiledStateGraph[Any, Any, Any, Any] = build_graph().compile()
        self.inflight: dict[tuple[str, int, bool, bool, str], asyncio.Task[dict[str, Any]]] = {}

    async def resolve(
        self,
        widget_id: str,
        spec: WidgetSpec,
        *,
        refresh: bool,
        dry_run: bool,
        access: RowAccess = UNRESTRICTED,
    ) -> dict[str, Any]:
        """Run the graph for one widget under the caller's `access` (tenant and row
        filters). Identical resolutions already in flight in this process are shared
        (single flight), so an expired tile on many open dashboards costs one backend
        query, not one per viewer; callers with different access never share one. The run
        is its own task: a caller that goes away (a disconnecting client) never cancels a
        resolution others wait on, and the answer still reaches the cache."""
        key = (widget_id, id(spec), refresh, dry_run, access_fingerprint(access))
        task = self.inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(
                self.graph.ainvoke(
                    {
                        "widget_id": widget_id,
                        "refresh": refresh,
                        "dry_run": dry_run,
                        "spec": spec,
                        "access": access,
                    },
                    context=self.context,
                )
            )
            self.inflight[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task)

    def _finished(self, key: tuple[str, int, bool, bool, str], task: asyncio.Task[Any]) -> None:
        if self.inflight.get(key) is task:
            del self.inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved: awaiting callers, if any, re-raise it

    async def generate(
        self, intent: DataIntent, *, access: RowAccess = UNRESTRICTED
    ) -> dict[str, Any]:
        """The checked SQL for an intent, without running it: the graph's dry-run path
        (route picks the generator, sql_generate writes, safety_check checks, the answer
        step logs the generation). Returns the state keys of GENERATION_KEYS."""
        spec = WidgetSpec.model_construct(
            title="sql/generate", kind="table", data_intent=intent, mock_data=[{}]
        )
        out: dict[str, Any] = await self.graph.ainvoke(
            {"widget_id": None, "spec": spec, "dry_run": True, "access": access},
            context=self.context,
            output_keys=list(GENERATION_KEYS),
        )
        return out
