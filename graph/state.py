"""Graph state. Input is a widget id plus request flags; the output is `response`,
the HTTP body the dashboard receives. Rows in state are capped by the row limit."""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal, TypedDict

from domain.access import RowAccess
from domain.freshness import Probe
from domain.lease import Lead
from domain.models import Backend, MetricDef, RoutingEntry, WidgetSpec


class Failure(TypedDict):
    kind: str
    detail: str
    node: str


class TraceEntry(TypedDict):
    node: str
    ms: float
    outcome: str


class InputState(TypedDict, total=False):
    widget_id: str
    refresh: bool
    dry_run: bool
    spec: WidgetSpec  # optional: given inline (tests, evals); else looked up in the registry
    # the caller's tenant and row filters (service: from the principal); absent = the dev
    # principal's: tenant `default`, no row filters (Studio, evals of the unfiltered graph)
    access: RowAccess
    # a background refresh (stale-while-revalidate or refresh-ahead): skipped when another
    # resolution holds the lease, or the entry has more than `ahead_s` of its TTL left
    background: bool
    ahead_s: float


class OutputState(TypedDict, total=False):
    response: dict[str, Any]
    # observability: every node appends {node, ms, outcome}
    trace: Annotated[list[TraceEntry], operator.add]
    # for the service's background refreshes: {key, expires_at, ttl_s, revalidate, live}
    freshness: dict[str, Any]


class State(InputState, OutputState, total=False):
    # route
    metric: MetricDef
    routing: RoutingEntry
    backend: Backend
    generator: Literal["compiled", "llm"]
    cache_key: str
    # results
    rows: list[dict[str, Any]]
    schema: list[dict[str, str]]
    generated_sql: str | None
    executed: bool
    cache_hit: bool
    resolved_at: float
    truncated: bool
    # warehouse path
    candidate_sql: str
    generation: dict[str, Any]  # LLM generation facts, written to sql_generation_log
    safety: dict[str, Any]  # {allowed, rule, reason}
    # freshness
    stale: bool
    stale_reason: str | None
    revalidate: bool  # serve now, refresh in the background
    last_good: dict[str, Any] | None  # a cache entry that may stand in for a failing backend
    fallback: Literal["last_good", "mock"]
    # given by the runner (graph/runner.py) to cache_lookup: the entry read that decided
    # (so it is not read again) and, when the backend was needed, this run's part in the
    # key's leadership scope (no token: the scope holds the lease)
    probe: Probe | None
    lead: Lead | None
    skipped: bool  # a background refresh that had nothing to do
    shared: bool  # the live answer another resolution (the lease's leader) just wrote
    # failure
    failure: Failure | None
