"""The one helper module of the test suite: real-server helpers (databases, ports, the
service in-process), test doubles for node and graph tests, and the demo config.

Fixtures live in tests/conftest.py; test modules import helpers from here, never from
conftest or from one another."""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import httpx
import psycopg
from fastapi import FastAPI
from sqlglot.tokens import TokenType

from adapters.lakehouse import TABLES, build_lakehouse
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
from metricsql import dialect
from service.app import create_app
from service.schemas import ResolveResponse
from service.settings import REPO_ROOT, Settings
from service.wiring import Resources

CONFIG_DIR = REPO_ROOT / "config"
PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# The services' Redis socket timeout in tests: a loaded machine's slow Redis call must not
# become a cache miss (the default 0.1 s does, and trips the breaker); Redis down is still
# refused at once.
SLOW_REDIS_OK_S = 5.0
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


@contextmanager
def sea_lakehouse(token: str = "dapi-test") -> Iterator[Any]:
    """The local Statement Execution API server (fakes.databricks_sea) over a fresh demo
    lakehouse in DuckDB, accepting `token`."""
    from fakes.databricks_sea import FakeSeaServer

    con = duckdb.connect()
    build_lakehouse(con, now=datetime.now(UTC))
    with FakeSeaServer(con, token=token) as srv:
        yield srv


def sea_settings(sea: Any) -> dict[str, Any]:
    """The settings (running_service keywords) that point a service at the local Statement
    Execution API server `sea` (the `sea` transport: the connector's client for it)."""
    return {
        "databricks_host": f"{sea.server_hostname}:{sea.port}",
        "databricks_transport": "sea",
        "databricks_http_path": sea.http_path,
        "databricks_token": sea.token,
    }


@contextmanager
def resolver_serve(
    env: Mapping[str, str], log_path: Path, *, cwd: Path | None = None, timeout_s: float = 120
) -> Iterator[subprocess.Popen[bytes]]:
    """`resolver serve` as a process with exactly `env` (its `PORT` included), its output in
    `log_path`; yields once /healthz answers (an AssertionError with the log's tail if it
    exits or does not come up in `timeout_s`), and is stopped on the way out (SIGTERM, then
    SIGKILL after 30 s)."""
    base = f"http://127.0.0.1:{env['PORT']}"

    def tail() -> str:
        return log_path.read_text(errors="replace")[-4000:]

    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [entry_point("resolver"), "serve"],
            cwd=cwd,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                assert proc.poll() is None, f"resolver serve exited ({proc.returncode}):\n{tail()}"
                assert time.monotonic() < deadline, f"resolver serve did not come up:\n{tail()}"
                try:
                    if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.25)
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def copy_config(tmp: Path) -> Path:
    dst = tmp / "config"
    shutil.copytree(CONFIG_DIR, dst)
    return dst


@asynccontextmanager
async def running_service(
    *, client_host: str = "127.0.0.1", clock: Callable[[], float] | None = None, **overrides: Any
) -> AsyncIterator[Service]:
    """The service over real PostgreSQL/Redis, called from `client_host` (loopback by
    default: dev mode's dev principal). Forced refreshes are not debounced unless a test
    sets `refresh_min_interval_s`; the database is seeded at boot unless it sets
    `seed_demo`. `clock` (a FakeClock) replaces the resolver's wall clock."""
    overrides.setdefault("refresh_min_interval_s", 0)
    overrides.setdefault("seed_demo", True)  # fresh databases: the demo widgets (SEED_DEMO)
    overrides.setdefault("cache_socket_timeout_s", SLOW_REDIS_OK_S)
    settings = Settings(**overrides)
    app = create_app(settings, clock=clock or time.time)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(client_host, 50123))
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://127.0.0.1:8000",  # dev mode: a loopback Host
        ) as client:
            yield Service(app=app, client=client, settings=settings)


@dataclass
class Served:
    """The service on a real loopback HTTP server (uvicorn, in this event loop)."""

    app: Any
    url: str
    settings: Settings


@asynccontextmanager
async def served(**overrides: Any) -> AsyncIterator[Served]:
    """The service over real PostgreSQL/Redis behind uvicorn on a free loopback port: for
    what the in-memory ASGI transport cannot carry (a stream that stays open); seeded at boot
    unless `seed_demo` is given, as running_service."""
    import uvicorn

    overrides.setdefault("refresh_min_interval_s", 0)
    overrides.setdefault("seed_demo", True)  # fresh databases: the demo widgets (SEED_DEMO)
    overrides.setdefault("cache_socket_timeout_s", SLOW_REDIS_OK_S)
    settings = Settings(**overrides)
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 120
    while not server.started:  # a condition, not a timing: the lifespan boots the service
        assert not task.done(), "the server stopped while starting"
        assert time.monotonic() < deadline, "the server did not start"
        await asyncio.sleep(0.05)
    try:
        yield Served(app=app, url=f"http://127.0.0.1:{port}", settings=settings)
    finally:
        server.should_exit = True
        await task


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


# ---------------------------------------------------------------- Spark as the reference engine
# One local Spark session (local[1], ANSI mode, session time zone UTC, loopback only) reads
# the demo lakehouse generated in DuckDB for a fixed SPARK_NOW and written to parquet, so
# both engines see identical data (the `spark` fixture in conftest.py). Spark has no
# catalog `main`, so for Spark only the three-part names become temp views
# (`main.claims.claim_events` -> `main__claims__claim_events`), and the Databricks-only
# `col:path` becomes `get_json_object(col, '$.path')` (what Databricks documents it to
# mean); both edits are made at sqlglot token boundaries, everything else runs as written.

SPARK_NOW = datetime(2026, 11, 26, 17, 45, 24, 654321, tzinfo=UTC)  # sub-second on purpose


def spark_view_name(table: str) -> str:
    return table.replace(".", "__")


def write_lakehouse_parquet(out: Path, now: datetime = SPARK_NOW) -> dict[str, str]:
    """The demo tables for `now`, written to parquet: three-part name -> file."""
    con = duckdb.connect()
    build_lakehouse(con, now=now)
    files = {}
    for name in TABLES:
        path = out / f"{spark_view_name(name)}.parquet"
        con.execute(f"COPY (SELECT * FROM {name}) TO '{path}' (FORMAT parquet)")
        files[name] = str(path)
    con.close()
    return files


@contextmanager
def spark_session(parquet: dict[str, str], scratch: Path) -> Iterator[Any]:
    """A local Spark session with the demo tables as temp views (stopped on exit)."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    session = (
        SparkSession.builder.master("local[1]")
        .appName("wdr-spark-reference")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.default.parallelism", "1")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.ansi.enabled", "true")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.warehouse.dir", str(scratch / "warehouse"))
        .config("spark.local.dir", str(scratch / "local"))
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    for name, path in parquet.items():
        session.read.parquet(path).createOrReplaceTempView(spark_view_name(name))
    try:
        yield session
    finally:
        session.stop()


def for_spark(sql: str) -> str:
    """The Databricks SQL text with demo tables as temp views and `col:key` as
    get_json_object(col, '$.key'); every other character is left as written."""
    tokens = dialect.DATABRICKS.tokenize(sql)
    edits: list[tuple[int, int, str]] = []
    i = 0
    while i < len(tokens):
        window = tokens[i : i + 5]
        name = ".".join(t.text for t in window[0::2]).lower()
        if (
            len(window) == 5
            and all(t.token_type == TokenType.DOT for t in window[1::2])
            and name in TABLES
        ):
            edits.append((window[0].start, window[4].end, spark_view_name(name)))
            i += 5
            continue
        if i + 2 < len(tokens) and tokens[i + 1].token_type == TokenType.COLON:
            col, key = tokens[i].text, tokens[i + 2].text
            edits.append((tokens[i].start, tokens[i + 2].end, f"get_json_object({col}, '$.{key}')"))
            i += 3
            continue
        i += 1
    for start, end, text in reversed(edits):
        sql = sql[:start] + text + sql[end + 1 :]
    return sql


def normalize_value(v: Any, *, zoned: bool = True) -> Any:
    """One comparable form for a value from either engine (pyspark or DuckDB). `zoned`
    False: a naive datetime is a TIMESTAMP_NTZ (wall time), kept without an offset."""
    if hasattr(v, "asDict"):  # a pyspark Row (struct)
        v = v.asDict(recursive=False)
    if isinstance(v, dict):
        return {str(k): normalize_value(x, zoned=zoned) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [normalize_value(x, zoned=zoned) for x in v]
    if isinstance(v, bytes | bytearray | memoryview):
        return bytes(v).hex()  # as the service shows binary (domain.jsonsafe)
    if isinstance(v, datetime):
        # pyspark turns TIMESTAMP values into naive datetimes in the process's local zone
        if v.tzinfo is None and not zoned:
            return v.isoformat()
        return (v.astimezone(UTC) if v.tzinfo is None else v).isoformat()
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return float(v) if v.is_finite() else None
    if isinstance(v, float) and not math.isfinite(v):
        return repr(v)
    return v


def spark_rows(spark: Any, sql: str) -> tuple[list[str], list[list[Any]]]:
    df = spark.sql(for_spark(sql))
    zoned = ["NTZ" not in f.dataType.simpleString().upper() for f in df.schema.fields]
    rows = [
        [normalize_value(v, zoned=z) for v, z in zip(row, zoned, strict=True)]
        for row in df.collect()
    ]
    return list(df.columns), rows


def _row_sort_key(row: list[Any]) -> tuple[Any, ...]:
    return tuple(
        (0, "")
        if v is None
        else (1, round(float(v), 4), "")
        if isinstance(v, int | float) and not isinstance(v, bool)
        else (2, 0, repr(v))
        for v in row
    )


def same_value(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return bool(a == b)


def row_differences(left: list[list[Any]], right: list[list[Any]]) -> str | None:
    """None when both row lists hold the same rows (any order), else what differs."""
    if len(left) != len(right):
        return f"{len(left)} rows vs {len(right)} rows"
    for a, b in zip(sorted(left, key=_row_sort_key), sorted(right, key=_row_sort_key), strict=True):
        if len(a) != len(b):
            return f"{len(a)} columns vs {len(b)}"
        diff = [
            (i, x, y) for i, (x, y) in enumerate(zip(a, b, strict=True)) if not same_value(x, y)
        ]
        if diff:
            return f"column(s) {diff[:4]} in row {a}"
    return None


# dummy AWS credentials for the local Converse API server (botocore signs every request), in
# this process (converse_with_fake_aws) or in a `resolver serve` subprocess's environment
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIDTESTFAKE00000000",
    "AWS_SECRET_ACCESS_KEY": "fake-secret",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@contextmanager
def converse_with_fake_aws(**server: Any) -> Iterator[Any]:
    """The local Converse API server (`server`: its keyword arguments), with dummy AWS
    credentials set for its lifetime (and the caller's environment restored after)."""
    from fakes.bedrock_converse import ConverseServer

    old = {k: os.environ.get(k) for k in FAKE_AWS_ENV}
    os.environ.update(FAKE_AWS_ENV)
    try:
        with ConverseServer(**server) as srv:
            yield srv
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class FakeClock:
    """A wall clock a test moves (`advance`) instead of sleeping until a TTL has passed.
    It starts at the real time, so data seeded around now stays in range."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def until(condition: Callable[[], bool], *, timeout_s: float = 30.0) -> None:
    """Wait for `condition()` to hold (polled on the event loop), instead of sleeping for a
    time a loaded machine may not meet; fails after `timeout_s` (a generous bound, never
    an expectation of speed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s:.0f}s")
        await asyncio.sleep(0.002)
