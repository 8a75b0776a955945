"""Graph state. Input is a widget id plus request flags; the output is `response`,
the HTTP body the dashboard receives. Rows in state are capped by the row limit.

The TypedDicts come from typing_extensions: pydantic (and so LangGraph Studio's input and
output forms) needs it on Python < 3.12. Descriptions are `Field(description=...)`."""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal, NotRequired

from pydantic import Field
from typing_extensions import TypedDict

from domain.access import RowAccess
from domain.failures import FailureKind
from domain.freshness import Freshness, Probe
from domain.lease import Lead
from domain.models import Backend, DataIntent, MetricDef, RoutingEntry, WidgetSpec
from domain.ports import Trust


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
    # which way answered a question: the model's intent compiled from a catalog metric, or
    # SQL the model wrote (sql_generate), or an owner's verified answer; the intent it
    # grounded in, and why (not) grounded
    way: Trust
    intent: dict[str, Any]
    grounding: str


class Verification(TypedDict):
    """Who verified a question's answer, and when (ISO 8601): the response's `verification`."""

    verified_by: str
    verified_at: str


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


class RollupUsed(TypedDict):
    """The rollup an answer was read from: its name and when its data was built (epoch s);
    when its range was widened to whole buckets (`relative_ranges: floor`), the instant the
    rows start from (epoch s), earlier than the range asked for."""

    name: str
    built_at: float
    widened_to: NotRequired[float]


class RequestInput(TypedDict, total=False):
    """Resolve one widget: what `POST /v1/widgets/{widget_id}/data` asks for. The input
    form LangGraph Studio renders (`make studio`)."""

    # needed (route says so when it is missing); not `Required`: nodes build states
    widget_id: Annotated[
        str,
        Field(
            description="Needed: a registered widget's id (GET /v1/widgets lists them), "
            "e.g. open-issues-kpi or claims-filed-by-region"
        ),
    ]
    refresh: Annotated[
        bool,
        Field(
            description="Skip the cached answer and query the backend (a refresh within "
            "REFRESH_MIN_INTERVAL_S of the last live answer reuses it)"
        ),
    ]
    dry_run: Annotated[
        bool,
        Field(description="Generate and check the SQL, run nothing: the answer has no rows"),
    ]
    spec: Annotated[
        WidgetSpec,
        Field(
            description="Optional: the widget given inline (title, kind, data_intent, "
            "mock_data) instead of the registered one; `widget_id` still names it"
        ),
    ]
    intent: Annotated[
        DataIntent,
        Field(
            description="Optional: a data intent (metric_id, dimensions, time_range, grain, "
            "filters, limit, question) resolved instead of the widget's own; its title, kind "
            "and mock data stay"
        ),
    ]


class InputState(RequestInput, total=False):
    # the caller's tenant and row filters (service: from the principal); absent = the dev
    # principal's: tenant `default`, no row filters (Studio, evals of the unfiltered graph)
    access: RowAccess
    # a background refresh (stale-while-revalidate or refresh-ahead): skipped when another
    # resolution holds the lease, or the entry has more than `ahead_s` of its TTL left
    background: bool
    ahead_s: float


class OutputState(TypedDict, total=False):
    response: Annotated[dict[str, Any], Field(description="The HTTP body the dashboard receives")]
    # observability: every node appends {node, ms, outcome}
    trace: Annotated[list[TraceEntry], operator.add]
    # for the service's background refreshes (domain/freshness.py::Freshness)
    freshness: Freshness


class StudioOutput(OutputState, total=False):
    """What `langgraph dev` streams: the output plus, after each node, what it decided."""

    decided: Annotated[
        dict[str, Any],
        Field(
            description="What the last node wrote to the state: backend, metric, cache key, "
            "candidate SQL, the safety verdict, the failure; row data as a count"
        ),
    ]


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
    # rollups: the ones declaring the metric (route), the one that answered (rollup_query)
    rollup_candidates: tuple[str, ...]
    rollup: RollupUsed | None
    # the sources' data versions the answer was read at (domain/data_versions.py)
    data_versions: dict[str, int] | None
    # warehouse path
    candidate_sql: str
    generation: Generation  # LLM generation facts, written to sql_generation_log
    trust: Trust | None  # how far a question's answer can be trusted (response `trust`)
    # a question the model grounded in a PostgreSQL metric (sql_generate): postgres_query
    # runs this intent (`metric` and `backend` are then that metric's) instead of the spec's
    grounded: DataIntent | None
    verification: Verification | None  # a verified answer's who and when
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
