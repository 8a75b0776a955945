"""Everything the service holds open: built from Settings in the lifespan, closed on exit.

With no configuration: embedded PostgreSQL (pgserver) under data_dir, an in-process TTL
cache, the embedded DuckDB lakehouse, and no LLM. DATABASE_URL, REDIS_URL, DATABRICKS_*
and BEDROCK_MODEL_ID switch each part to the real thing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from adapters.cache import MemoryTTLCache, RedisCache
from adapters.lakehouse import TABLES as LAKEHOUSE_TABLES
from adapters.pg_generation_log import PgGenerationLog
from adapters.pg_migrate import migrate
from adapters.pg_seed import seed
from adapters.postgres import PgGateway
from adapters.registry import RegistryHolder, RegistryStore, validate_boot
from domain.failures import ResolverFailure
from domain.models import WidgetSpec
from graph.builder import build_graph
from graph.context import Context, SafetyPolicy, SqlGenerator, TableSchema, Warehouse
from service.problems import ProblemError
from service.schemas import GenerateBody, GenerateResponse
from service.settings import Settings

log = logging.getLogger("resolver")


class BootError(RuntimeError):
    """The configuration is inconsistent; the service refuses to start."""


def warehouse_tables(metrics: dict[str, Any]) -> frozenset[str]:
    return frozenset(
        m.definition.table.lower() for m in metrics.values() if m.definition.table.count(".") == 2
    )


def table_schemas(allowed: frozenset[str]) -> tuple[TableSchema, ...]:
    return tuple(
        TableSchema(name=name, columns=tuple((c, t) for c, t in cols))
        for name, cols in sorted(LAKEHOUSE_TABLES.items())
        if name.lower() in allowed
    )


async def _open_warehouse(settings: Settings, stack: AsyncExitStack) -> Warehouse:
    if settings.databricks_configured:
        from adapters.databricks import DatabricksWarehouse

        assert (
            settings.databricks_host and settings.databricks_http_path and settings.databricks_token
        )
        wh = DatabricksWarehouse(
            server_hostname=settings.databricks_host,
            http_path=settings.databricks_http_path,
            access_token=settings.databricks_token,
            query_timeout_s=settings.databricks_query_timeout_s,
        )
        stack.push_async_callback(wh.aclose)
        return wh
    from adapters.duckdb_warehouse import DuckDBWarehouse

    duck = await asyncio.to_thread(
        DuckDBWarehouse,
        now=datetime.now(UTC),
        statement_timeout_s=settings.duckdb_statement_timeout_s,
    )
    stack.callback(duck.close)
    return duck


def _open_llm(settings: Settings) -> SqlGenerator | None:
    if not settings.bedrock_model_id:
        return None
    from adapters.bedrock import BedrockSqlGenerator

    return BedrockSqlGenerator(
        model_id=settings.bedrock_model_id,
        region=settings.aws_region,
        endpoint_url=settings.bedrock_endpoint_url,
        timeout_s=settings.bedrock_timeout_s,
    )


async def database_url(settings: Settings, stack: AsyncExitStack | None = None) -> str:
    """DATABASE_URL, or the embedded server's (stopped when `stack` closes, if given)."""
    if settings.database_url:
        return settings.database_url
    from adapters.embedded_pg import start_embedded_postgres, stop_embedded_postgres

    data = settings.data_dir / "pg"
    log.info("DATABASE_URL not set: starting embedded PostgreSQL under %s", data)
    url = await asyncio.to_thread(start_embedded_postgres, data)
    if stack is not None:
        stack.push_async_callback(asyncio.to_thread, stop_embedded_postgres, data)
    return url


@dataclass
class Resources:
    settings: Settings
    context: Context
    graph: CompiledStateGraph[Any, Any, Any, Any]
    registry: RegistryHolder
    store: RegistryStore
    gateway: PgGateway
    inflight: dict[tuple[str, int, bool, bool], asyncio.Future[dict[str, Any]]] = field(
        default_factory=dict
    )

    async def resolve(
        self, widget_id: str, spec: WidgetSpec, *, refresh: bool, dry_run: bool
    ) -> dict[str, Any]:
        """Run the graph for one widget. Identical resolutions already in flight in this
        process are shared (single flight), so an expired tile on many open dashboards
        costs one backend query, not one per viewer."""
        key = (widget_id, id(spec), refresh, dry_run)
        pending = self.inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.inflight[key] = future
        try:
            out: dict[str, Any] = await self.graph.ainvoke(
                {"widget_id": widget_id, "refresh": refresh, "dry_run": dry_run, "spec": spec},
                context=self.context,
            )
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: followers, if any, re-raise it
            raise
        else:
            future.set_result(out)
            return out
        finally:
            del self.inflight[key]

    async def put_widget(self, widget_id: str, spec: WidgetSpec) -> bool:
        try:
            return await self.store.put_widget(widget_id, spec)
        except ResolverFailure as exc:
            raise ProblemError(
                503, f"widget store unavailable: {exc.detail}", title="Service Unavailable"
            ) from exc

    async def delete_widget(self, widget_id: str) -> bool:
        try:
            return await self.store.delete_widget(widget_id)
        except ResolverFailure as exc:
            raise ProblemError(
                503, f"widget store unavailable: {exc.detail}", title="Service Unavailable"
            ) from exc

    async def generate_sql(self, body: GenerateBody) -> GenerateResponse:
        from service.generate import generate_sql

        return await generate_sql(self, body)

    async def readiness(self) -> dict[str, Any]:
        ctx = self.context
        pg_ok, cache_ok = await asyncio.gather(self.gateway.ping(), ctx.cache.ping())
        wh_ok = await ctx.warehouse.ping() if ctx.warehouse else False
        components = {
            "postgres": {"ok": pg_ok},
            "cache": {"ok": cache_ok, "kind": getattr(ctx.cache, "describe", lambda: "?")()},
            "warehouse": {"ok": wh_ok, "kind": ctx.warehouse.name if ctx.warehouse else None},
            "llm": {"ok": ctx.llm is not None, "model_id": ctx.llm.model_id if ctx.llm else None},
            "registry": {"widgets": len(self.registry.widgets()), "version": self.registry.version},
        }
        status = "ok" if pg_ok and cache_ok and wh_ok else "degraded"
        return {"status": status, "components": components}


@asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    async with AsyncExitStack() as stack:
        url = await database_url(settings, stack)
        if settings.auto_migrate:
            applied = await migrate(url)
            if applied:
                log.info("applied migrations %s", applied)
        if settings.seed_demo:
            await seed(url, settings.config_dir)
        gateway = PgGateway(
            url,
            max_size=settings.pg_pool_max,
            statement_timeout_ms=settings.pg_statement_timeout_ms,
            connect_timeout_s=settings.pg_connect_timeout_s,
        )
        await gateway.open()
        stack.push_async_callback(gateway.close)
        store = RegistryStore(
            gateway.pool, settings.config_dir / "metric_routing.yaml", conninfo=url
        )
        registry = await store.load_holder()
        problems = validate_boot(registry.current)
        if problems:
            for p in problems:
                log.error("boot validation: %s", p)
            raise BootError("refusing to start: " + "; ".join(problems))
        await registry.start()
        stack.push_async_callback(registry.stop)

        if settings.redis_url:
            cache: Any = RedisCache(
                settings.redis_url,
                prefix=settings.cache_prefix,
                socket_timeout_s=settings.cache_socket_timeout_s,
            )
        else:
            cache = MemoryTTLCache()
        stack.push_async_callback(cache.aclose)
        warehouse = await _open_warehouse(settings, stack)
        allowed = warehouse_tables(registry.metrics())
        context = Context(
            registry=registry,
            cache=cache,
            postgres=gateway,
            warehouse=warehouse,
            llm=_open_llm(settings),
            generation_log=PgGenerationLog(gateway.pool),
            safety=SafetyPolicy(
                dialect="databricks", allowed_tables=allowed, max_rows=settings.max_rows
            ),
            table_schemas=table_schemas(allowed),
            default_row_limit=settings.default_row_limit,
        )
        graph = build_graph().compile()
        log.info(
            "resolver ready: postgres=%s cache=%s warehouse=%s llm=%s widgets=%d",
            "DATABASE_URL" if settings.database_url else "embedded",
            cache.describe(),
            warehouse.name,
            settings.bedrock_model_id or "none",
            len(registry.widgets()),
        )
        yield Resources(settings, context, graph, registry, store, gateway)
