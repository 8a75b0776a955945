"""Runs the graph for the routes: single flight for resolutions (in this process:
service/flight.py; across processes the key's leadership scope in graph/runner.py),
background refreshes (stale-while-revalidate, refresh-ahead: service/refresh.py), and the
dry-run path for SQL generation. No HTTP here: routes turn what this returns into
responses and problems."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from domain.access import UNRESTRICTED, RowAccess
from domain.freshness import Freshness
from domain.keys import access_fingerprint
from domain.models import DataIntent, WidgetSpec
from graph.context import Context
from graph.observe import GraphObserver
from graph.runner import GraphRunner
from service.flight import Flight, Flights
from service.refresh import Refresher


def _flight_of(
    widget_id: str, spec: WidgetSpec, refresh: bool, dry_run: bool, access: RowAccess
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The single-flight key of a resolution (identical runs share one) and its input."""
    return (widget_id, id(spec), refresh, dry_run, access_fingerprint(access)), {
        "widget_id": widget_id,
        "refresh": refresh,
        "dry_run": dry_run,
        "spec": spec,
        "access": access,
    }


# What a generation needs back from the graph, besides the response.
GENERATION_KEYS = ("response", "failure", "safety", "candidate_sql", "generator", "generation")


class Resolver:
    """`observer` (graph/observe.py) wraps every node for metrics and spans; `config` is the
    run config passed to every graph run (LangSmith's tracer callbacks, when on)."""

    def __init__(
        self,
        context: Context,
        *,
        observer: GraphObserver | None = None,
        config: dict[str, Any] | None = None,
        refresh_ahead: bool = True,
        refresh_concurrency: int = 4,
        refresh_max_keys: int = 1000,
        node_timeouts: Mapping[str, float] | None = None,
        fast_lane: bool = True,
    ) -> None:
        """`fast_lane`: the runner takes the steps of a cache answer itself, without the
        Pregel loop (graph/runner.py). Off when run callbacks are set (LangSmith), so the
        answer steps are traced as a graph run there."""
        self.context = context
        self.config = config
        self.runner = GraphRunner(
            context,
            observer=observer,
            config=config,
            node_timeouts=node_timeouts,
            fast_lane=fast_lane,
        )
        self.graph: CompiledStateGraph[Any, Any, Any, Any] = self.runner.graph
        # background refreshes (stale-while-revalidate, refresh-ahead): service/refresh.py
        self.refresher = Refresher(
            self._background,
            refresh_ahead=refresh_ahead,
            max_concurrency=refresh_concurrency,
            max_keys=refresh_max_keys,
            clock=context.clock,
            holds=self._holds if context.data_versions is not None else None,
        )
        # called with (graph input, output) after every answered run (service/changes.py)
        self.watchers: list[Callable[[dict[str, Any], dict[str, Any]], None]] = []
        self.flights = Flights(self.runner, on_result=self._answered)

    def _answered(self, graph_input: dict[str, Any], out: dict[str, Any]) -> None:
        inputs = graph_input | {"refresh": False}
        self.refresher.after(inputs, out)
        for watch in self.watchers:
            watch(inputs, out)

    def _holds(self, hint: Freshness) -> bool:
        gate = self.context.data_versions
        return gate is not None and gate.verdict(hint.versions) == "unchanged"

    async def background(self, graph_input: dict[str, Any]) -> dict[str, Any]:
        """One background refresh run (for service/changes.py)."""
        return await self._background(graph_input)

    async def _background(self, graph_input: dict[str, Any]) -> dict[str, Any]:
        """One background refresh (`background=true`): under the key's lease, like any run,
        and with the access of the foreground resolution that asked for it."""
        return await self.runner.ainvoke(graph_input)

    def join(
        self,
        widget_id: str,
        spec: WidgetSpec,
        *,
        refresh: bool,
        dry_run: bool,
        access: RowAccess = UNRESTRICTED,
    ) -> Flight:
        """The run for one widget under the caller's `access` (tenant and row filters): the
        identical one already in flight in this process, or a new one (single flight), so an
        expired tile on many open dashboards costs one backend query, not one per viewer;
        callers with different access never share one. The run is detached from its
        callers: one that goes away does not cancel it for the others."""
        key, graph_input = _flight_of(widget_id, spec, refresh, dry_run, access)
        return self.flights.join(key, graph_input)

    async def resolve(
        self,
        widget_id: str,
        spec: WidgetSpec,
        *,
        refresh: bool,
        dry_run: bool,
        access: RowAccess = UNRESTRICTED,
    ) -> dict[str, Any]:
        """Run (or join) the graph for one widget; returns `response` and `trace`.

        With no identical run in flight, the run is taken as far as its deciding read in
        the caller's task: when that read answers it (a cache answer: nothing to share, no
        backend), the answer is finished there too; otherwise the run goes on as a shared
        flight from that read (joined by identical callers meanwhile), never reading or
        routing again."""
        key, graph_input = _flight_of(widget_id, spec, refresh, dry_run, access)
        if key not in self.flights.inflight:
            decided = await self.runner.decide(graph_input)
            if self.runner.answered(decided):
                out = await self.runner.ainvoke(graph_input, decided)
                if "response" not in out:
                    raise RuntimeError("the graph finished without a response")
                if "freshness" in out:
                    self._answered(graph_input, out)
                return out
            return await self.flights.join(key, graph_input, decided).result()
        return await self.flights.join(key, graph_input).result()

    async def aclose(self) -> None:
        await self.refresher.aclose()
        await self.flights.aclose()

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
            config=self.config,  # type: ignore[arg-type]
            context=self.context,
            output_keys=list(GENERATION_KEYS),
        )
        return out
