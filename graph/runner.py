"""The one way the service runs a resolution: the graph's own nodes, edges and reducers,
with the key's leadership as one scope around the work it protects.

    route -> [read the entry once] -> cache_lookup -> ... -> degrade_or_return
                                  \\-- backend needed: async with leases.lead(key) as lead:
                                        cache_lookup (lead or share) -> ... -> degrade_or_return
                                  \\-- a rollup that answers here may answer it: first, no lease:
                                        cache_lookup -> rollup_query -> degrade_or_return

The runner walks the edge table (graph/routing.py::NEXT) and calls the same node functions
the compiled graph holds (graph/builder.py::node_table, observed once: metrics and spans are
recorded as each node runs), merging each update through the graph's own channels (its
reducers: `trace` appends). A compiled graph run costs about 2 ms here (the Pregel loop's
channels, checkpoints and callbacks on every step) where the nodes of a cache answer take
about 0.1 ms, so the steps that only read or shape the answer (`LANE`, and a rollup's read)
run here; the first node outside it (a backend query, with its timeout policy) and
everything after it run in the compiled graph, entered at that node with the state so far
(`build_graph(entry=...)`).

Before `cache_lookup` the runner reads the key's entry once (`nodes/cache_lookup.py::probe`)
and hands the read on in `probe`. When that read cannot answer (the backend is needed), the
rest of the run happens inside `async with ctx.leases.lead(key, ...) as lead`: the lease is
taken on entry and released on exit, with the outcome of the run (`settle`), or
`abandoned` when the run raised, timed out or was cancelled. `lead` goes to cache_lookup
(lead: read once more, another instance may have filled it; follow: the leader's answer
or failure). No lease token ever enters the state.

A rollup read needs no single flight (one PostgreSQL read any instance may make at once;
its partitions are built under their own leases): when the backend is needed and one of
the run's candidate rollups answered its last read in this process (`RollupStore.
answering`), cache_lookup and rollup_query are tried without the lease; a rollup answer then
finishes the run with no lease (two Redis round trips fewer), anything else is dropped and
the run goes on under the lease as above.

`fast_lane=False` (or run callbacks, LangSmith) hands every run to the compiled graph right
after cache_lookup, so the answer steps are traced as a graph run there too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from langgraph.channels.binop import BinaryOperatorAggregate
from langgraph.graph import END
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime

from domain.freshness import Probe
from domain.lease import Lead, Outcome
from graph.builder import build_graph, node_table
from graph.context import Context
from graph.observe import GraphObserver
from graph.routing import NEXT
from nodes.cache_lookup import answers_from_cache, needs_lease, probe

# the steps the runner takes itself when the fast lane is on: none queries the warehouse,
# the LLM or a PostgreSQL metric (the nodes with a timeout policy, which run in the compiled
# graph); rollup_query reads a rollup (one pipelined PostgreSQL round trip, bounded by its
# statement timeout; no timeout policy), so a rollup answer costs no graph run either, and
# degrade_or_return writes the cache for it (a live answer of the warehouse's comes from
# the compiled graph)
LANE = frozenset({"route", "cache_lookup", "rollup_query", "mock_data", "degrade_or_return"})
# the steps it always takes itself: the decision, and the lead around what follows it
DECIDE = frozenset({"route", "cache_lookup"})
# what the runner hands to cache_lookup only (never carried into the compiled graph)
_RUNNER_KEYS = ("probe", "lead")

Chunk = dict[str, dict[str, Any]]


@dataclass(slots=True)
class Decision:
    """A run taken as far as its deciding read (GraphRunner.decide): the state so far, the
    updates that built it, where the run goes on (`cache_lookup`, END, or the first step
    outside the lane) and, at the cache, the entry as read."""

    state: dict[str, Any]
    chunks: list[Chunk] = field(default_factory=list)
    at: str = "route"
    read: Probe | None = None


class GraphRunner:
    """Built once per service: the compiled graph, its node table and its reducers."""

    def __init__(
        self,
        context: Context,
        *,
        observer: GraphObserver | None = None,
        config: dict[str, Any] | None = None,
        node_timeouts: Mapping[str, float] | None = None,
        fast_lane: bool = True,
    ) -> None:
        self.context = context
        self.config = config
        self._runtime: Runtime[Context] = Runtime(context=context)
        self._node_timeouts = node_timeouts
        self.nodes = node_table(observer=observer)
        self.graph: CompiledStateGraph[Any, Any, Any, Any] = build_graph(
            node_timeouts=node_timeouts, nodes=self.nodes
        ).compile()
        self._entered: dict[str, CompiledStateGraph[Any, Any, Any, Any]] = {}
        # the graph's reducers: channels that aggregate (the rest take the last value)
        self._reducers = {
            name: ch
            for name, ch in self.graph.channels.items()
            if isinstance(ch, BinaryOperatorAggregate)
        }
        fast = fast_lane and not (config or {}).get("callbacks")
        self.lane = LANE if fast else DECIDE

    def _entered_at(self, name: str) -> CompiledStateGraph[Any, Any, Any, Any]:
        graph = self._entered.get(name)
        if graph is None:
            graph = build_graph(
                node_timeouts=self._node_timeouts, nodes=self.nodes, entry=name
            ).compile()
            self._entered[name] = graph
        return graph

    def _merge(self, state: dict[str, Any], update: Mapping[str, Any]) -> None:
        """Apply a node's update as the graph's channels do (the same reducers)."""
        for key, value in update.items():
            channel = self._reducers.get(key)
            if channel is None:
                state[key] = value
            elif key in state and type(value) is list:
                # a plain list is never an Overwrite: the channel would apply its operator
                # (without building a channel per update)
                state[key] = channel.operator(state[key], value)
            else:
                merged = channel.from_checkpoint(state[key]) if key in state else channel.copy()
                merged.update([value])
                state[key] = merged.get()

    async def decide(self, graph_input: Mapping[str, Any]) -> Decision:
        """The steps up to and including the one read that decides (`route`, then the
        entry's read), their updates kept in the decision. `answered(decision)` says whether
        the rest is a cache answer (no backend, no lease); either way `astream(...,
        decided=decision)` goes on from there without running a step or a read again."""
        decision = Decision(state=dict(graph_input))
        async for chunk in self._advance(decision):
            decision.chunks.append(chunk)
        return decision

    def answered(self, decision: Decision) -> bool:
        """Whether what follows the decision is answered without a backend: the run ended
        before the cache (a routing failure's mock), or the read answers it (a hit, a stale
        entry served while it revalidates, a last good entry within a failure's backoff)."""
        if decision.at == END:
            return True
        return decision.at == "cache_lookup" and answers_from_cache(
            decision.state,  # type: ignore[arg-type]
            self.context,
            decision.read,
        )

    async def astream(
        self, graph_input: Mapping[str, Any], decided: Decision | None = None
    ) -> AsyncIterator[Chunk]:
        """The run's node updates as they happen, `{node: update}` (as the compiled graph's
        `astream(stream_mode="updates")` gives them); given a `decided` run (`decide`), its
        updates so far, then the rest of it."""
        if decided is None:
            decision = Decision(state=dict(graph_input))
            async for chunk in self._advance(decision):
                yield chunk
        else:
            decision = decided
            for chunk in decision.chunks:
                yield chunk
        state, name = decision.state, decision.at
        if name == END:
            return
        if name != "cache_lookup":  # a step outside the lane before the cache
            async for chunk in self._hand_on(state, name):
                yield chunk
            return
        read = decision.read
        leases = self.context.leases
        if leases is None or not needs_lease(state, self.context, read):  # type: ignore[arg-type]
            async for chunk in self._rest(state, read, None):
                yield chunk
            return
        rolled = await self._rollup_unleased(state, read)
        if rolled is not None:  # answered from a rollup: no lease taken
            for chunk in rolled:
                yield chunk
            async for chunk in self._walk(state, await self._next(state, "rollup_query")):
                yield chunk
            return
        async with leases.lead(
            state["cache_key"],
            wait_s=self.context.lease_wait_s,
            follow=not state.get("background"),
        ) as lead:
            async for chunk in self._rest(state, read, lead):
                yield chunk
            lead.settle(_outcome(state))

    async def _advance(self, decision: Decision) -> AsyncIterator[Chunk]:
        """The lane's steps from `route` to the first of: the cache (then its one read, in
        `decision.read`), the end, or a step outside the lane; `decision.at` says which."""
        state, name = decision.state, "route"
        while name != END and name != "cache_lookup" and name in self.lane:
            yield await self._step(state, name)
            name = await self._next(state, name)
        decision.at = name
        if name == "cache_lookup":
            decision.read = await probe(state, self.context)  # type: ignore[arg-type]

    async def _rest(
        self, state: dict[str, Any], read: Any, lead: Lead | None
    ) -> AsyncIterator[Chunk]:
        """cache_lookup on the read (and the lead), then every step after it."""
        given = dict(state, probe=read, lead=lead)
        update = await self.nodes["cache_lookup"](given, self._runtime)
        self._merge(state, update)
        yield {"cache_lookup": update}
        async for chunk in self._walk(state, await self._next(state, "cache_lookup")):
            yield chunk

    async def _rollup_unleased(self, state: dict[str, Any], read: Any) -> list[Chunk] | None:
        """A rollup answer needs no lease: it is one PostgreSQL read that every instance may
        make at once (its partitions are built under their own leases; two Redis round
        trips saved), so a run one of whose candidate rollups answered its last read here
        (`answering`) first tries cache_lookup (no lead) and rollup_query on a copy of the
        state. Their updates when the rollup answered (the state then takes them); else
        None, nothing kept, and the run goes on under the key's lease as if untried (once:
        the store then says the rollup does not answer, until a read under a lease does)."""
        store = self.context.rollups
        if (
            store is None
            or "rollup_query" not in self.lane
            or state.get("dry_run")
            or state.get("background")
            or not any(map(store.answering, state.get("rollup_candidates") or ()))
        ):
            return None
        trial = dict(state)
        update = await self.nodes["cache_lookup"](dict(trial, probe=read), self._runtime)
        self._merge(trial, update)
        if await self._next(trial, "cache_lookup") != "rollup_query":
            return None
        chunks = [{"cache_lookup": update}, await self._step(trial, "rollup_query")]
        if not trial.get("rollup"):
            return None
        state.update(trial)
        return chunks

    async def _walk(self, state: dict[str, Any], name: str) -> AsyncIterator[Chunk]:
        """Every step from `name` on: the lane's here, the rest in the compiled graph."""
        while name != END:
            if name not in self.lane:
                async for chunk in self._hand_on(state, name):
                    yield chunk
                return
            yield await self._step(state, name)
            name = await self._next(state, name)

    async def _step(self, state: dict[str, Any], name: str) -> Chunk:
        update: dict[str, Any] = await self.nodes[name](state, self._runtime)
        self._merge(state, update)
        return {name: update}

    @staticmethod
    async def _next(state: dict[str, Any], name: str) -> str:
        after = NEXT[name]
        return after if isinstance(after, str) else await after(state)  # type: ignore[arg-type]

    async def _hand_on(self, state: dict[str, Any], name: str) -> AsyncIterator[Chunk]:
        """The rest of the run in the compiled graph, entered at `name` with the state."""
        graph_input = {k: v for k, v in state.items() if k not in _RUNNER_KEYS}
        async for chunk in self._entered_at(name).astream(
            graph_input,
            config=self.config,  # type: ignore[arg-type]
            context=self.context,
            stream_mode="updates",
        ):
            for update in chunk.values():
                if update:
                    self._merge(state, update)
            yield chunk

    async def ainvoke(
        self, graph_input: Mapping[str, Any], decided: Decision | None = None
    ) -> dict[str, Any]:
        """The run's output: `response`, `trace` and (when cached) `freshness`."""
        out: dict[str, Any] = {"trace": []}
        async for chunk in self.astream(graph_input, decided):
            for update in chunk.values():
                if not update:
                    continue
                out["trace"] = out["trace"] + list(update.get("trace") or [])
                for key in ("response", "freshness"):
                    if key in update:
                        out[key] = update[key]
        return out


def _outcome(state: Mapping[str, Any]) -> Outcome:
    """What the leader's followers get: the answer is in the cache, or the failure."""
    failure = state.get("failure")
    if failure is None:
        return Outcome(ok=True)
    return Outcome(ok=False, kind=failure["kind"], detail=failure["detail"])
