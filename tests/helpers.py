"""The one helper module of the test suite: real-server helpers (databases, ports, the
service in-process), test doubles for node and graph tests, and the demo config.

Fixtures live in tests/conftest.py; test modules import helpers from here, never from
conftest or from one another."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from fastapi import FastAPI

from domain.config import load_config
from domain.failures import ResolverFailure
from domain.models import DataIntent, MetricDef, RoutingEntry, WidgetSpec
from domain.ports import Generation, GenerationRequest, SafetyPolicy, TableSchema
from domain.results import Column, QueryResult
from graph.context import Context
from service.app import create_app
from service.schemas import ResolveResponse
from service.settings import REPO_ROOT, Settings
from service.wiring import Resources

CONFIG_DIR = REPO_ROOT / "config"
PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BIN_DIR = Path(sys.executable).parent  # the running interpreter's scripts (resolver, langgraph)


def entry_point(name: str) -> str:
    """An installed console script of the interpreter running the tests."""
    path = BIN_DIR / name
    found = str(path) if path.exists() else shutil.which(name)
    assert found, f"console script {name!r} is not installed next to {sys.executable}"
    return found


# ---------------------------------------------------------------- real servers


def _with_db(url: str, dbname: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{dbname}"


def create_database(prefix: str = "wdr_test") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return _with_db(PG_ADMIN_URL, name)


def drop_database(url: str) -> None:
    name = url.rpartition("/")[2]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    """A loopback port with nothing listening on it (for servers, or a closed port)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------- the service in-process

# The answer's fields, taken from the response model (the one definition), without the
# optional `trace`.
RESPONSE_FIELDS = frozenset(
    f.alias or name for name, f in ResolveResponse.model_fields.items() if name != "trace"
)


@dataclass
class Service:
    app: FastAPI
    client: httpx.AsyncClient
    settings: Settings

    @property
    def res(self) -> Resources:
        resources: Resources = self.app.state.resources
        return resources

    async def data(
        self,
        widget_id: str,
        *,
        trace: bool = False,
        headers: dict[str, str] | None = None,
        **body: Any,
    ) -> httpx.Response:
        """POST /v1/widgets/{id}/data; a 200 body is checked against ResolveResponse."""
        params = {"trace": "true"} if trace else None
        r = await self.client.post(
            f"/v1/widgets/{widget_id}/data", json=body or None, params=params, headers=headers
        )
        if r.status_code == 200:
            assert set(r.json()) == RESPONSE_FIELDS | ({"trace"} if trace else set()), r.text
            ResolveResponse.model_validate(r.json())
        return r


def copy_config(tmp: Path) -> Path:
    dst = tmp / "config"
    shutil.copytree(CONFIG_DIR, dst)
    return dst


@asynccontextmanager
async def running_service(
    *, client_host: str = "127.0.0.1", **overrides: Any
) -> AsyncIterator[Service]:
    """The service over real PostgreSQL/Redis, called from `client_host` (loopback by
    default: dev mode's dev principal). Forced refreshes are not debounced unless a test
    sets `refresh_min_interval_s`."""
    overrides.setdefault("refresh_min_interval_s", 0)
    settings = Settings(**overrides)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(client_host, 50123))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://resolver.test"
        ) as client:
            yield Service(app=app, client=client, settings=settings)


# ---------------------------------------------------------------- doubles and demo config


def demo_config() -> tuple[dict[str, WidgetSpec], dict[str, MetricDef], dict[str, RoutingEntry]]:
    cfg = load_config(CONFIG_DIR)
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

    def has_query(self, metric_id: str) -> bool:
        return self.mapped

    def render_sql(self, metric: MetricDef, intent: DataIntent, *, row_filter: Any = None) -> str:
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
        return QueryResult(rows=self.rows, columns=[Column("value", "number")])

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


# ---------------------------------------------------------------- node and graph tests

WAREHOUSE_TABLES = frozenset({"main.claims.claim_events", "main.claims.devices", "main.ops.alerts"})
NOW = 1_790_000_000.0


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
