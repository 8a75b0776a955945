"""Test doubles for the graph's unit tests. Integration tests use the real servers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from domain.failures import ResolverFailure
from domain.models import DataIntent, MetricDef, RoutingEntry, WidgetSpec
from domain.results import Column, QueryResult
from graph.context import Generation, GenerationRequest

CONFIG = Path(__file__).resolve().parents[1] / "config"


def load_config() -> tuple[dict[str, WidgetSpec], dict[str, MetricDef], dict[str, RoutingEntry]]:
    metrics = {
        m["name"]: MetricDef(**m)
        for m in yaml.safe_load((CONFIG / "metrics.yaml").read_text())["metrics"]
    }
    routing = {
        k: RoutingEntry(**v)
        for k, v in yaml.safe_load((CONFIG / "metric_routing.yaml").read_text())["metrics"].items()
    }
    widgets = {
        k: WidgetSpec(**v)
        for k, v in yaml.safe_load((CONFIG / "widgets.yaml").read_text())["widgets"].items()
    }
    return widgets, metrics, routing


@dataclass
class DictRegistry:
    widgets_: dict[str, WidgetSpec]
    metrics_: dict[str, MetricDef]
    routing_: dict[str, RoutingEntry]

    @classmethod
    def demo(cls) -> DictRegistry:
        return cls(*load_config())

    def widget(self, widget_id: str) -> WidgetSpec | None:
        return self.widgets_.get(widget_id)

    def metric(self, metric_id: str) -> MetricDef | None:
        return self.metrics_.get(metric_id)

    def routing(self, metric_id: str) -> RoutingEntry | None:
        return self.routing_.get(metric_id)

    def widgets(self) -> dict[str, WidgetSpec]:
        return dict(self.widgets_)

    def metrics(self) -> dict[str, MetricDef]:
        return dict(self.metrics_)

    @property
    def version(self) -> str:
        return "test"


@dataclass
class StubGateway:
    rows: list[dict[str, Any]] = field(default_factory=lambda: [{"value": 7}])
    error: ResolverFailure | None = None
    mapped: bool = True
    calls: list[str] = field(default_factory=list)

    def has_query(self, metric_id: str) -> bool:
        return self.mapped

    def render_sql(self, metric: MetricDef, intent: DataIntent) -> str:
        return (
            f"SELECT value FROM kpi_metrics_history WHERE metric_name = %(metric)s -- {metric.name}"
        )

    async def run_metric(self, metric: MetricDef, intent: DataIntent, *, now: float) -> QueryResult:
        self.calls.append(metric.name)
        if self.error:
            raise self.error
        return QueryResult(rows=self.rows, columns=[Column("value", "number")])

    async def ping(self) -> bool:
        return self.error is None


@dataclass
class StubWarehouse:
    rows: list[dict[str, Any]] = field(default_factory=lambda: [{"region": "west", "value": 3}])
    error: ResolverFailure | None = None
    executed: list[str] = field(default_factory=list)
    name: str = "duckdb"

    async def execute(self, sql: str, *, max_rows: int) -> QueryResult:
        self.executed.append(sql)
        if self.error:
            raise self.error
        return QueryResult(
            rows=self.rows,
            columns=[Column("region", "string"), Column("value", "integer")],
            sql=sql,
        )

    async def ping(self) -> bool:
        return True


@dataclass
class StubLLM:
    sql: str = "SELECT region, count(*) AS value FROM main.claims.claim_events GROUP BY region"
    error: ResolverFailure | None = None
    model_id: str = "stub-model"
    requests: list[GenerationRequest] = field(default_factory=list)

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
            if r.get("approved_key") == approved_key and r.get("safety_allowed"):
                sql: str | None = r.get("generated_sql")
                return sql
        return None
