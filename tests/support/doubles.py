"""Test doubles for node and graph tests: an in-memory registry over the demo config, stub
gateway, warehouse, model and query log, and `make_ctx` (a graph Context of them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from adapters.lease import LocalLeases
from domain.config import load_config
from domain.failures import ResolverFailure
from domain.models import DataIntent, MetricDef, RoutingEntry, WidgetSpec
from domain.ports import (
    Generation,
    GenerationRequest,
    Grounding,
    GroundingRequest,
    SafetyPolicy,
    TableSchema,
)
from domain.results import Column, QueryResult
from graph.context import Context
from graph.state import State
from service.settings import REPO_ROOT


def demo_config() -> tuple[dict[str, WidgetSpec], dict[str, MetricDef], dict[str, RoutingEntry]]:
    cfg = load_config(REPO_ROOT / "config")
    return cfg.widgets, cfg.metrics, cfg.routing


@dataclass
class DictRegistry:
    widgets_: dict[str, WidgetSpec]
    metrics_: dict[str, MetricDef]
    routing_: dict[str, RoutingEntry]

    @classmethod
    def demo(cls) -> DictRegistry:
        return cls(*demo_config())

    def widget(self, widget_id: str, tenant: str = "default") -> WidgetSpec | None:
        return self.widgets_.get(widget_id) if tenant == "default" else None

    def metric(self, metric_id: str) -> MetricDef | None:
        return self.metrics_.get(metric_id)

    def routing(self, metric_id: str) -> RoutingEntry | None:
        return self.routing_.get(metric_id)

    def widgets(self) -> dict[str, WidgetSpec]:
        return dict(self.widgets_)

    def metrics(self) -> dict[str, MetricDef]:
        return dict(self.metrics_)

    def routings(self) -> dict[str, RoutingEntry]:
        return dict(self.routing_)

    @property
    def version(self) -> str:
        return "test"


@dataclass
class StubGateway:
    rows: list[dict[str, Any]] = field(default_factory=lambda: [{"value": 7}])
    error: ResolverFailure | None = None
    mapped: bool = True
    calls: list[str] = field(default_factory=list)
    row_filters: list[Any] = field(default_factory=list)

    def has_query(self, metric: MetricDef) -> bool:
        return self.mapped

    def render_sql(
        self, metric: MetricDef, intent: DataIntent, *, now: float = 0.0, row_filter: Any = None
    ) -> str:
        return (
            f"SELECT value FROM kpi_metrics_history WHERE metric_name = %(metric)s -- {metric.name}"
        )

    async def run_metric(
        self, metric: MetricDef, intent: DataIntent, *, now: float, row_filter: Any = None
    ) -> QueryResult:
        self.calls.append(metric.name)
        self.row_filters.append(row_filter)
        if self.error:
            raise self.error
        sql = self.render_sql(metric, intent, now=now)
        return QueryResult(rows=self.rows, columns=[Column("value", "number")], sql=sql)

    async def ping(self) -> bool:
        return self.error is None


@dataclass
class StubWarehouse:
    rows: list[dict[str, Any]] = field(default_factory=lambda: [{"region": "west", "value": 3}])
    error: ResolverFailure | None = None
    executed: list[str] = field(default_factory=list)
    tags: list[dict[str, str]] = field(default_factory=list)
    name: str = "duckdb"

    async def execute(
        self, sql: str, *, max_rows: int, tags: Mapping[str, str] | None = None
    ) -> QueryResult:
        self.executed.append(sql)
        self.tags.append(dict(tags or {}))
        if self.error:
            raise self.error
        return QueryResult(
            rows=self.rows,
            columns=[Column("region", "string"), Column("value", "integer")],
            sql=sql,
        )

    async def describe(self, tables: Any) -> tuple[TableSchema, ...]:
        return ()

    async def ping(self) -> bool:
        return True


@dataclass
class StubLLM:
    sql: str = "SELECT region, count(*) AS value FROM main.claims.claim_events GROUP BY region"
    error: ResolverFailure | None = None
    model_id: str = "stub-model"
    requests: list[GenerationRequest] = field(default_factory=list)
    # grounding: the intent the model expresses (None: no metric fits), or its failure
    intent: dict[str, Any] | None = None
    ground_error: ResolverFailure | None = None
    groundings: list[GroundingRequest] = field(default_factory=list)

    async def ground(self, request: GroundingRequest) -> Grounding:
        self.groundings.append(request)
        if self.ground_error:
            raise self.ground_error
        return Grounding(
            intent=dict(self.intent) if self.intent is not None else None,
            reason="stub",
            model_id=self.model_id,
            prompt_hash="g",
            input_tokens=7,
            output_tokens=3,
        )

    async def generate(self, request: GenerationRequest) -> Generation:
        self.requests.append(request)
        if self.error:
            raise self.error
        return Generation(
            sql=self.sql,
            rationale="stub",
            model_id=self.model_id,
            prompt_hash="h",
            input_tokens=10,
            output_tokens=5,
        )


@dataclass
class ListLog:
    records: list[dict[str, Any]] = field(default_factory=list)

    async def write(self, record: dict[str, Any]) -> None:
        self.records.append(record)

    async def last_approved(self, *, approved_key: str) -> str | None:
        for r in reversed(self.records):
            if (
                r.get("approved_key") == approved_key
                and r.get("safety_allowed")
                and r.get("way") != "compiled_from_metric"
            ):
                sql: str | None = r.get("generated_sql")
                return sql
        return None


# ---------------------------------------------------------------- node and graph tests

WAREHOUSE_TABLES = frozenset({"main.claims.claim_events", "main.claims.devices", "main.ops.alerts"})
NOW = 1_790_000_000.0


class CountingLeases(LocalLeases):
    """In-process leases, recording each key a run asked to lead."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    async def lead_or_follow(self, key: str, **kw: Any) -> Any:
        self.asked.append(key)
        return await super().lead_or_follow(key, **kw)


def make_ctx(**kw: object) -> Context:
    """A Context of doubles over the demo config (any field overridable)."""
    from adapters.cache import MemoryTTLCache

    base: dict[str, object] = {
        "registry": DictRegistry.demo(),
        "cache": MemoryTTLCache(),
        "postgres": StubGateway(),
        "warehouse": StubWarehouse(),
        "safety": SafetyPolicy(allowed_tables=WAREHOUSE_TABLES, max_rows=500),
        "clock": lambda: NOW,
    }
    base.update(kw)
    return Context(**base)  # type: ignore[arg-type]


def as_state(*updates: Mapping[str, Any]) -> State:
    """The graph state after `updates` (an input, then node outputs, later keys winning):
    what a node test hands the next node. Nodes return plain dicts (LangGraph's updates);
    this is the one place a test turns them back into the typed `State`."""
    merged: dict[str, Any] = {}
    for update in updates:
        merged.update(update)
    return cast(State, merged)
