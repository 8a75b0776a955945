"""Graph state. Input is a widget id plus request flags; the output is `response`,
the HTTP body the dashboard receives. Rows in state are capped by the row limit."""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal

from typing_extensions import TypedDict

from domain.access import RowAccess
from domain.failures import FailureKind
from domain.freshness import Freshness, Probe
from domain.lease import Lead
from domain.models import Backend, MetricDef, RoutingEntry, WidgetSpec


class Failure(TypedDict):
    """A failure a node met (or took over: a failure note, a lease leader's outcome)."""

    kind: FailureKind  # the degrade kind: the answer's `source`, a problem's `kind`
    detail: str  # safe to show to the dashboard
    node: str  # the node that met it (cache_lookup: taken over from another run)


class SafetyVerdict(TypedDict):
    """safety_check's verdict on the candidate SQL."""

    allowed: bool
    rule: str | None  # the rule that refused it (sqlsafety/rules/), None when allowed
    reason: str | None


class Generation(TypedDict, total=False):
    """An LLM generation's facts, written to sql_generation_log by degrade_or_return."""

    tenant: str
    widget_id: str | None
    metric_id: str
    question: str
    generator: Literal["llm"]
    model_id: str | None
    prompt_hash: str
    generated_sql: str
    latency_ms: float
    input_tokens: int | None
    output_tokens: int | None
    cache_read_tokens: int | None
    approved_key: str  # the approved-SQL cache key of this question, intent and policy
    reused: bool  # the SQL came from the approved cache or the log: not written again
    failure_kind: str  # the model's failure, when it failed


class CacheEntry(TypedDict, total=False):
    """A cached answer (domain/freshness.py::make_entry), with the windows it was written with."""

    v: int
    rows: list[dict[str, Any]]
    schema: list[dict[str, str]]
    generated_sql: str | None
    truncated: bool
    resolved_at: float  # when the live answer was resolved (epoch seconds)
    ttl_s: float
    swr_s: float
    sie_s: float


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
    # for the service's background refreshes (domain/freshness.py::Freshness)
    freshness: Freshness


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
    generation: Generation  # LLM generation facts, written to sql_generation_log
    safety: SafetyVerdict
    # freshness
    stale: bool
    stale_reason: str | None
    revalidate: bool  # serve now, refresh in the background
    last_good: CacheEntry | None  # a cache entry that may stand in for a failing backend
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
