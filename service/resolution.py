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
        self.inflight: dict[tuple[str, int, bool, bool, str], asyncio.Future[dict[str, Any]]] = {}

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
        query, not one per viewer; callers with different access never share one."""
        key = (widget_id, id(spec), refresh, dry_run, access_fingerprint(access))
        pending = self.inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.inflight[key] = future
        try:
            out: dict[str, Any] = await self.graph.ainvoke(
                {
                    "widget_id": widget_id,
                    "refresh": refresh,
                    "dry_run": dry_run,
                    "spec": spec,
                    "access": access,
                },
                context=self.context,
            )
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: followers, if any, re-raise it
            raise
        else:
            future.set_result(out)
            return out
        finally:
            del self.inflight[key]

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
