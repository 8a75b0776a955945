"""The one wiring: everything a resolver process holds open, built from Settings.

`open_resources(settings)` is used by the HTTP service's lifespan, by `graph/studio.py`
(LangGraph Studio) and by `evals/harness.py`, so the three run the same parts. With no
configuration: embedded PostgreSQL (pgserver) under data_dir, an in-process TTL cache,
the embedded DuckDB lakehouse, and no LLM. DATABASE_URL, REDIS_URL, DATABRICKS_* and
BEDROCK_MODEL_ID switch each part to the real thing; a part a caller passes in (the
evals' replaying model, a warehouse with a statement log) is used instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from adapters.deadline import within
from adapters.identity import ApiKeyStore
from adapters.lease import LocalLeases, RedisLeases
from adapters.near_cache import NearCache
from adapters.pg_generation_log import PgGenerationLog
from adapters.pg_migrate import migrate
from adapters.pg_seed import seed
from adapters.pg_verified_answers import PgVerifiedAnswers
from adapters.postgres import PgGateway, postgres_problems
from adapters.rate_limit import TenantLlmBudget
from adapters.registry import RegistryHolder, RegistryStore, WidgetLimits, validate_boot
from adapters.rollups import PgRollups
from adapters.table_schemas import WarehouseTableSchemas
from domain.access import AccessPolicy, PolicyError, load_policy, validate_policy
from domain.config import ROLLUPS_FILE, ConfigError, load_rollups
from domain.ports import Cache, SafetyPolicy, SqlGenerator, TableSchema, Warehouse
from graph.context import Context
from nodes.verified import watch_verified
from service.auth import Authenticator, open_authenticator
from service.changes import open_gate
from service.settings import Settings
from service.shared_state import open_cache, open_leases

log = logging.getLogger("resolver")


class BootError(RuntimeError):
    """The configuration is inconsistent; the service refuses to start."""


def warehouse_tables(metrics: dict[str, Any]) -> frozenset[str]:
    return frozenset(
        m.definition.table.lower() for m in metrics.values() if m.definition.table.count(".") == 2
    )


async def open_warehouse(settings: Settings, stack: AsyncExitStack) -> Warehouse:
    """Databricks when DATABRICKS_* are set, else the embedded DuckDB lakehouse."""
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
            transport=settings.databricks_transport,
        )
        stack.push_async_callback(wh.aclose)
        return wh
    from adapters.duckdb_warehouse import DuckDBWarehouse

    duck = await asyncio.to_thread(
        DuckDBWarehouse,
        now=datetime.now(UTC),
        statement_timeout_s=settings.duckdb_statement_timeout_s,
    )
    stack.push_async_callback(asyncio.to_thread, duck.close)  # off the loop: it removes files
    return duck


def open_llm(settings: Settings) -> SqlGenerator | None:
    """The Bedrock generator when BEDROCK_MODEL_ID is set, else None (bedrock_unconfigured)."""
    if not settings.bedrock_model_id:
        return None
    from adapters.bedrock import BedrockSqlGenerator

    return BedrockSqlGenerator(
        model_id=settings.bedrock_model_id,
        region=settings.aws_region,
        endpoint_url=settings.bedrock_endpoint_url,
        timeout_s=settings.bedrock_timeout_s,
        guardrail_id=settings.bedrock_guardrail_id,
        guardrail_version=settings.bedrock_guardrail_version,
        prompt_cache=settings.bedrock_prompt_cache,
        base_model_id=settings.bedrock_base_model_id,
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
    """What `open_resources` holds open. `context` is what every graph run gets."""

    settings: Settings
    context: Context
    registry: RegistryHolder
    store: RegistryStore
    gateway: PgGateway
    database_url: str
    auth: Authenticator

    def node_timeouts(self) -> dict[str, float]:
        """The graph's node deadlines: each node's bounded calls plus a little slack."""
        s = self.settings
        log_s = 4 * s.generation_log_deadline_s  # verified lookup+flag, approved lookup, log
        bedrock_s = s.bedrock_timeout_s + 5.0 + 1.0  # read + connect + margin (1 attempt)
        warehouse_s = s.databricks_query_timeout_s + 5.0 + 1.0  # query + connect + margin
        if not s.databricks_configured:
            warehouse_s = s.duckdb_statement_timeout_s + 1.0
        return {
            "postgres_query": s.pg_deadline_s + 1.0,
            "sql_generate": bedrock_s + log_s + 1.0,
            "databricks_execute": warehouse_s + 1.0,
        }

    async def readiness(self) -> dict[str, Any]:
        """Every dependency probed concurrently, each within readyz_probe_timeout_s, so the
        answer comes within that bound whatever the network does."""
        ctx, limit = self.context, self.settings.readyz_probe_timeout_s

        async def probe(check: Awaitable[bool]) -> bool:
            try:
                return await within(limit, check, on_timeout=lambda: TimeoutError())
            except TimeoutError:
                return False

        async def no_warehouse() -> bool:
            return False

        pg_ok, cache_ok, wh_ok = await asyncio.gather(
            probe(self.gateway.ping()),
            probe(ctx.cache.ping()),
            probe(ctx.warehouse.ping() if ctx.warehouse else no_warehouse()),
        )
        listening = self.registry.listening
        components = {
            "postgres": {"ok": pg_ok},
            "cache": {"ok": cache_ok, "kind": getattr(ctx.cache, "describe", lambda: "?")()},
            "warehouse": {"ok": wh_ok, "kind": ctx.warehouse.name if ctx.warehouse else None},
            "llm": {"ok": ctx.llm is not None, "model_id": ctx.llm.model_id if ctx.llm else None},
            "registry": {
                "ok": listening,
                "stale": not listening,  # not following other instances: the last snapshot
                "widgets": len(self.registry.all_widgets()),
                "version": self.registry.version,
            },
            "auth": self.auth.describe(),
            "access_policy": self.auth.policy.describe(),
        }
        status = "ok" if pg_ok and cache_ok and wh_ok and listening else "degraded"
        return {"status": status, "components": components}


def open_policy(
    settings: Settings, registry: RegistryHolder, described: tuple[TableSchema, ...]
) -> AccessPolicy:
    """The row-level security policy, validated against the warehouse allowlist (the
    columns of every table the warehouse described) and the Postgres metrics. BootError
    names every bad entry. A table the warehouse could not describe right now (an outage at
    boot) is checked by name only, so an outage never stops the boot. With
    ROW_FILTERS_DISABLED=true: no policy, no row filters (said loudly)."""
    if settings.row_filters_disabled:
        log.warning(
            "access policy: ROW_FILTERS_DISABLED=true: NO ROW FILTERS, every principal reads "
            "every row of every table and series"
        )
        return AccessPolicy()
    try:
        policy = load_policy(settings.access_policy_path)
    except PolicyError as exc:
        raise BootError(f"refusing to start: {exc}") from None
    columns: dict[str, list[str] | None] = {t: None for t in warehouse_tables(registry.metrics())}
    columns |= {t.name.lower(): [c for c, _ in t.columns] for t in described}
    problems = validate_policy(
        policy,
        table_columns=columns,
        series_dimensions={
            name: tuple(m.definition.dimensions)
            for name, m in registry.metrics().items()
            if (r := registry.routings().get(name)) is not None and r.backend == "postgres"
        },
    )
    if problems:
        for p in problems:
            log.error("boot validation: %s", p)
        fix = f"fix {policy.source} (or ACCESS_POLICY_FILE); ROW_FILTERS_DISABLED=true runs unfiltered"
        raise BootError("refusing to start: " + "; ".join(problems) + f" ({fix})")
    log.info("access policy in force: %s", policy.describe())
    return policy


def open_rollups(
    settings: Settings,
    registry: RegistryHolder,
    described: tuple[TableSchema, ...],
    pool: Any,
    warehouse: Warehouse,
    leases: LocalLeases | RedisLeases,
) -> PgRollups | None:
    """The rollups of config/rollups.yaml when ROLLUPS_ENABLED, validated against the
    catalog, the routing and the warehouse's columns (a table it could not describe right
    now is checked by name only). BootError names every bad declaration."""
    if not settings.rollups_enabled:
        return None
    from metricsql.rollups import validate_rollups

    try:
        defs = load_rollups(settings.config_dir / ROLLUPS_FILE)
    except ConfigError as exc:
        raise BootError(f"refusing to start: {exc}") from None
    columns: dict[str, list[str] | None] = {t: None for t in warehouse_tables(registry.metrics())}
    columns |= {t.name.lower(): [c for c, _ in t.columns] for t in described}
    rollups, problems = validate_rollups(
        defs, metrics=registry.metrics(), routing=registry.routings(), table_columns=columns
    )
    if problems:
        for p in problems:
            log.error("boot validation: %s", p)
        raise BootError("refusing to start: " + "; ".join(problems))
    return PgRollups(
        pool,
        rollups,
        warehouse=warehouse,
        leases=leases,
        lease_wait_s=settings.effective_lease_ttl_s,
        max_rows=settings.rollup_max_rows,
        statement_timeout_ms=settings.pg_statement_timeout_ms,
    )


@asynccontextmanager
async def open_resources(
    settings: Settings,
    *,
    llm: SqlGenerator | None = None,
    warehouse: Warehouse | None = None,
    cache: Cache | None = None,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[Resources]:
    """Open (and on exit close) PostgreSQL, the registry and its listener, the cache, the
    warehouse and the model; build the runtime Context (`clock`: tests move it). BootError
    when the configuration is inconsistent. `llm`, `warehouse`, `cache` replace the parts."""
    async with AsyncExitStack() as stack:
        url = await database_url(settings, stack)
        if settings.auto_migrate:
            applied = await migrate(url)
            if applied:
                log.info("applied migrations %s", applied)
        if settings.seed_at_boot:  # never a DATABASE_URL database unless SEED_DEMO=true
            try:
                await seed(url, settings.config_dir, trigger="boot")
            except ValueError as exc:  # widgets.yaml / metrics.yaml: named entries
                log.error("boot seed: %s", exc)
                raise BootError(f"refusing to start: {exc}") from None
        gateway = PgGateway(
            url,
            max_size=settings.pg_pool_max,
            statement_timeout_ms=settings.pg_statement_timeout_ms,
            connect_timeout_s=settings.pg_connect_timeout_s,
            deadline_s=settings.pg_deadline_s,
            keepalives_idle_s=settings.pg_keepalives_idle_s,
        )
        await gateway.open()
        stack.push_async_callback(gateway.close)
        store = RegistryStore(
            gateway.pool,
            settings.config_dir / "metric_routing.yaml",
            conninfo=url,
            deadline_s=settings.pg_deadline_s,
        )
        registry = await RegistryHolder.create(
            store,
            limits=WidgetLimits(
                max_per_tenant=settings.widget_max_per_tenant,
                max_spec_bytes=settings.widget_spec_max_bytes,
                max_mock_data_bytes=settings.widget_mock_data_max_bytes,
            ),
            connect_timeout_s=settings.pg_connect_timeout_s,
            ping_interval_s=settings.registry_ping_interval_s,
            ping_timeout_s=settings.registry_ping_timeout_s,
            backoff_max_s=settings.registry_backoff_max_s,
            keepalives_idle_s=settings.pg_keepalives_idle_s,
        )
        problems = validate_boot(registry.current, postgres_problems=postgres_problems)
        if problems:
            for p in problems:
                log.error("boot validation: %s", p)
            raise BootError("refusing to start: " + "; ".join(problems))
        await registry.start()
        stack.push_async_callback(registry.stop)
        with contextlib.suppress(TimeoutError):  # ready as soon as it listens (best effort)
            await registry.wait_listening(settings.pg_deadline_s)

        if cache is None:
            opened = open_cache(settings)
            stack.push_async_callback(opened.aclose)
            if isinstance(opened, NearCache):
                await opened.start()
            cache = opened
        if warehouse is None:
            warehouse = await open_warehouse(settings, stack)
        if llm is None:
            llm = open_llm(settings)
        leases = open_leases(settings)
        stack.push_async_callback(leases.aclose)
        allowed = warehouse_tables(registry.metrics())
        # the prompt's columns come from the warehouse's own catalog, refreshed on reloads
        schemas = WarehouseTableSchemas(
            warehouse, lambda: warehouse_tables(registry.metrics()) & allowed
        )
        await schemas.refresh()

        async def refresh_schemas(_snapshot: object) -> None:
            await schemas.refresh()

        registry.subscribe(refresh_schemas)
        policy = open_policy(settings, registry, schemas.current())
        auth = await open_authenticator(settings, policy, ApiKeyStore(gateway.pool), stack)
        rollups = open_rollups(
            settings, registry, schemas.current(), gateway.pool, warehouse, leases
        )
        if rollups is not None:
            aged = not settings.change_refresh  # else rebuilt when the version moves
            maintainer = asyncio.create_task(rollups.run(settings.rollup_check_interval_s, aged))

            async def stop_maintainer() -> None:
                maintainer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await maintainer

            stack.push_async_callback(stop_maintainer)
        log_s = settings.generation_log_deadline_s
        context = Context(
            clock=clock,
            registry=registry,
            cache=cache,
            postgres=gateway,
            warehouse=warehouse,
            llm=llm,
            generation_log=PgGenerationLog(gateway.pool, timeout_s=log_s),
            verified_answers=PgVerifiedAnswers(gateway.pool, timeout_s=log_s),
            llm_budget=TenantLlmBudget(
                settings.llm_rate_limit, redis_url=settings.redis_url, prefix=settings.cache_prefix
            ),
            refresh_min_interval_s=settings.refresh_min_interval_s,
            safety=SafetyPolicy(
                dialect="databricks", allowed_tables=allowed, max_rows=settings.max_rows
            ),
            table_schemas=schemas,
            default_row_limit=settings.default_row_limit,
            leases=leases,
            lease_wait_s=settings.effective_lease_ttl_s,
            failure_backoff_s=settings.failure_backoff_s,
            rollups=rollups,
            data_versions=open_gate(settings),  # service/changes.py
        )
        # a catalog change that breaks a verified answer flags it (also checked per use)
        registry.subscribe(await watch_verified(context))
        log.info(
            "resolver ready: postgres=%s cache=%s leases=%s warehouse=%s llm=%s widgets=%d"
            " rollups=%s",
            "DATABASE_URL" if settings.database_url else "embedded",
            getattr(cache, "describe", lambda: "?")(),
            leases.describe(),
            warehouse.name,
            llm.model_id if llm else "none",
            len(registry.all_widgets()),
            ",".join(rollups.rollups) if rollups else "off",
        )
        yield Resources(settings, context, registry, store, gateway, url, auth)
