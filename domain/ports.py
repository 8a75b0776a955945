"""Ports: the protocols adapters implement and the plain data they exchange with nodes.

Nodes reach the outside world only through these (held by `graph.context.Context`);
adapters implement them without importing the graph. Pure: no framework imports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from domain.access import SeriesFilter
from domain.lease import Leases as Leases  # the lease port lives with its data there
from domain.models import DataIntent, MetricDef, RoutingEntry, WidgetSpec
from domain.results import QueryResult
from domain.rollups import Rollup, RollupAnswer, RollupQuery


def _policy_version() -> str:
    from sqlsafety import POLICY_VERSION

    return POLICY_VERSION


class Registry(Protocol):
    """An in-process snapshot of widgets, catalog and routing (refreshed on writes)."""

    def widget(self, widget_id: str, tenant: str = ...) -> WidgetSpec | None: ...
    def metric(self, metric_id: str) -> MetricDef | None: ...
    def routing(self, metric_id: str) -> RoutingEntry | None: ...
    def metrics(self) -> dict[str, MetricDef]: ...
    def routings(self) -> dict[str, RoutingEntry]: ...
    @property
    def version(self) -> str: ...


class Cache(Protocol):
    """Never raises: a cache that is down is a miss (get -> None) and a no-op set.
    `latest=True` reads past any copy kept near this process (the shared store's value)."""

    async def get(self, key: str, *, latest: bool = False) -> dict[str, Any] | None: ...
    async def set(
        self, key: str, value: dict[str, Any], ttl_seconds: int, *, drop: Sequence[str] = ()
    ) -> None:
        """Write `value` (not when `ttl_seconds` <= 0) and delete the keys `drop` with it,
        in one step (Redis: one round trip, one transaction)."""
        ...

    async def delete(self, key: str) -> None: ...
    async def ping(self) -> bool: ...


class PostgresGateway(Protocol):
    """Allowlisted, parameterized queries per metric. Raises domain.failures.PostgresFailure.
    A query is planned once: `render_sql` for a dry run, `run_metric` (its result carries
    the SQL it ran) otherwise, both at the caller's `now`."""

    def has_query(self, metric: MetricDef) -> bool: ...
    def render_sql(
        self,
        metric: MetricDef,
        intent: DataIntent,
        *,
        now: float,
        row_filter: SeriesFilter | None = None,
    ) -> str: ...
    async def run_metric(
        self,
        metric: MetricDef,
        intent: DataIntent,
        *,
        now: float,
        row_filter: SeriesFilter | None = None,
    ) -> QueryResult: ...
    async def ping(self) -> bool: ...


class Warehouse(Protocol):
    """Runs one checked SELECT written in the Databricks dialect. Raises WarehouseFailure."""

    name: str  # "databricks" or "duckdb"

    async def execute(
        self, sql: str, *, max_rows: int, tags: Mapping[str, str] | None = None
    ) -> QueryResult:
        """`tags` label the statement for the warehouse's own accounting (Databricks
        `query_tags`: widget, metric, tenant); a warehouse without such a thing ignores them."""
        ...

    async def describe(self, tables: Sequence[str]) -> tuple[TableSchema, ...]:
        """The tables' columns from the warehouse's own catalog (unknown ones left out)."""
        ...

    async def ping(self) -> bool: ...


class RollupStore(Protocol):
    """Rollups kept in a shared store (adapters/rollups.py: PostgreSQL). Raises
    PostgresFailure when the store cannot be read (the resolution then takes today's path)."""

    def for_metric(self, metric: str) -> tuple[Rollup, ...]:
        """The rollups declaring `metric`, in config order."""
        ...

    async def answer(self, query: RollupQuery, *, now: float) -> RollupAnswer | None:
        """The rows of a matched read, or None while a partition it needs is not built."""
        ...

    def answering(self, rollup: str) -> bool:
        """Whether this process's last read of `rollup` answered (no I/O): a run then reads
        it before taking its key's lease (graph/runner.py)."""
        ...

    async def catch_up(self, rollup: str, *, data_version: str, now: float) -> bool:
        """Rebuild the rollup's update-window partitions not built from `data_version` (the
        table's version now; once across the fleet). False when a build failed."""
        ...


class DataVersions(Protocol):
    """The data version of a source (a warehouse table's three-part name, or
    `postgres:<metric>`): a number that moves forward when its data changes
    (domain/data_versions.py). Never raises: None when the source has none or the probe
    failed (answers over it then live by their TTL)."""

    async def probe(self, source: str) -> int | None: ...


class SqlGenerator(Protocol):
    """Writes Databricks SQL for a free-text question (the LLM). Raises GenerationFailure."""

    model_id: str

    async def generate(self, request: GenerationRequest) -> Generation: ...

    async def ground(self, request: GroundingRequest) -> Grounding: ...


class LlmBudget(Protocol):
    """Per-tenant LLM rate limit. `take` spends one generation: None if allowed, else the
    seconds until the tenant may ask again. Never raises (a limiter that is down allows)."""

    limit: str  # e.g. "30/minute"

    async def take(self, tenant: str) -> float | None: ...
    async def retry_after(self, tenant: str) -> float: ...


class GenerationLog(Protocol):
    """sql_generation_log: written after each answer is decided; never raises."""

    async def write(self, record: dict[str, Any]) -> None: ...
    async def last_approved(self, *, approved_key: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class TableSchema:
    name: str  # three-part name
    columns: tuple[tuple[str, str], ...]  # (column, type)


class TableSchemas(Protocol):
    """The allowlisted tables' columns the LLM prompt shows (refreshed with the registry)."""

    def current(self) -> tuple[TableSchema, ...]: ...


@dataclass(frozen=True, slots=True)
class FixedTableSchemas:
    """TableSchemas that never change (tests, or a host without a warehouse catalog)."""

    tables: tuple[TableSchema, ...] = ()

    def current(self) -> tuple[TableSchema, ...]:
        return self.tables


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    question: str
    metric: MetricDef
    intent: DataIntent
    tables: tuple[TableSchema, ...]
    dialect: str
    max_rows: int


@dataclass(frozen=True, slots=True)
class Generation:
    sql: str
    rationale: str
    model_id: str
    prompt_hash: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: float = 0.0
    cache_read_tokens: int | None = None  # prompt-cache hits (Bedrock cacheReadInputTokens)


# How far an answer to a free-text question can be trusted (the response's `trust`): an
# answer an owner verified (`PUT /v1/widgets/{id}/verified-answer`), compiled from a
# governed metric by the metric compiler, or SQL the model wrote itself (checked by the
# safety layer, not verified by anyone).
Trust = Literal["verified", "compiled_from_metric", "model_written_unverified"]


@dataclass(frozen=True, slots=True)
class VerifiedAnswer:
    """An owner's verified answer to a question (as written) of one tenant: a data intent
    over a catalog metric (compiled at each run) or checked SQL (unfiltered: the caller's
    row filters are applied at each run), who verified it and when (epoch seconds). A
    catalog change that breaks it flags it `needs_reverification` (with the reason): it is
    then never served until verified again."""

    tenant: str
    question: str
    widget_id: str  # the widget it was verified through
    intent: dict[str, Any] | None
    sql: str | None
    verified_by: str
    verified_at: float
    needs_reverification: bool = False
    reverification_reason: str | None = None


class VerifiedAnswers(Protocol):
    """The verified answers (PostgreSQL `verified_answers`). `get` and `flag` never raise
    (a store that is down serves no verified answer: the question takes the usual way);
    `read` (the API's) raises PostgresFailure, as `put` and `delete` (audited) do."""

    async def read(self, tenant: str, question: str) -> VerifiedAnswer | None: ...
    async def unflagged(self) -> list[VerifiedAnswer]: ...  # every tenant's; [] when down
    async def get(self, tenant: str, question: str) -> VerifiedAnswer | None: ...
    async def flag(self, tenant: str, question: str, reason: str) -> None: ...
    async def put(self, answer: VerifiedAnswer) -> bool: ...  # True: created
    async def delete(self, tenant: str, question: str, *, widget_id: str, subject: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class GroundingRequest:
    """Ask the model to express a question as a data intent over these catalog metrics."""

    question: str
    metrics: tuple[MetricDef, ...]
    max_rows: int


@dataclass(frozen=True, slots=True)
class Grounding:
    """The model's answer to a grounding request: `intent` is the raw tool input (to be
    validated against the catalog), None when the model says no metric fits."""

    intent: dict[str, Any] | None
    reason: str
    model_id: str
    prompt_hash: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: float = 0.0
    cache_read_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class SafetyPolicy:
    dialect: str = "databricks"
    allowed_tables: frozenset[str] = frozenset()
    max_rows: int = 10_000
    version: str = field(default_factory=lambda: _policy_version())
