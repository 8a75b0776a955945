"""Replay eval cases through the compiled resolution graph and judge what happened.

Everything real except the model: the compiled LangGraph graph, the real
`BedrockSqlGenerator` (langchain-aws ChatBedrockConverse + botocore) talking to a local
Converse API server that replays each case's recorded model answer, the sqlglot safety
layer, the embedded DuckDB warehouse with the demo lakehouse, and a real PostgreSQL
database (created per run, migrated, seeded, dropped) behind the registry, the postgres
metrics gateway and the SQL generation log.

Per case the harness records the final `source`, every statement that reached the
warehouse (new entries in its executed-statement log), the rows returned and the latency;
it fingerprints the demo tables after every case and the PostgreSQL tables before and
after the run. `judge()` turns one observation into a verdict; it is pure, so the verdict
logic is tested on its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg
from pydantic import ValidationError

from adapters.bedrock import BedrockSqlGenerator
from adapters.cache import MemoryTTLCache
from adapters.duckdb_warehouse import DuckDBWarehouse
from adapters.prompting import INTENT_TOOL_NAME
from domain.access import UNRESTRICTED, AccessPolicy, RowAccess
from domain.identity import Principal
from domain.ports import SqlGenerator
from evals.cases import (
    DEFAULT_DATASETS,
    Case,
    CaseError,
    build_spec,
    load_cases,
    parse_case,
    select_cases,
)
from evals.recordings import (
    RecordingBedrockSqlGenerator,
    converse_reply,
    load_recordings,
    recordings_path,
    save_recordings,
)
from evals.statements import executed_problems, statement_problems
from evals.verdicts import (
    MAX_RESPONSE_BYTES,
    CaseResult,
    Observation,
    Verdict,
    case_result,
    judge,
)
from graph.builder import build_graph
from graph.context import Context
from service.settings import Settings
from service.wiring import open_resources

PG_ADMIN_URL = os.environ.get(
    "EVAL_PG_ADMIN_URL",
    os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
)
PG_TABLES: dict[str, str] = {  # table -> ordering key for the content hash
    "metrics_catalog": "name",
    "kpi_metrics_history": "id",
    "widgets": "id",
}
Mode = Literal["replay", "live", "recorded"]
SCHEMA_REJECTED = "schema_rejected"

__all__ = [
    "DEFAULT_DATASETS",
    "MAX_RESPONSE_BYTES",
    "Case",
    "CaseError",
    "CaseResult",
    "Harness",
    "Mode",
    "Observation",
    "RunEvidence",
    "Verdict",
    "judge",
    "load_cases",
    "load_recordings",
    "parse_case",
    "recordings_path",
    "save_recordings",
    "select_cases",
    "statement_problems",
]


# ------------------------------------------------------------------------------ fingerprints


async def pg_checksums(conninfo: str) -> dict[str, str]:
    """`<rows>:<md5 of the ordered rows>` per resolver table that must never change."""
    out: dict[str, str] = {}
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        for table, key in PG_TABLES.items():
            cur = await conn.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t.{key}), '')) "
                f"FROM {table} AS t"
            )
            row = await cur.fetchone()
            assert row is not None
            out[table] = f"{row[0]}:{row[1]}"
    return out


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return [
        f"{name}: {before.get(name)} -> {after.get(name)}"
        for name in sorted(set(before) | set(after))
        if before.get(name) != after.get(name)
    ]


# ------------------------------------------------------------------------------ harness


def _admin_url_for(dbname: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{dbname}"


@asynccontextmanager
async def eval_database(database_url: str | None) -> AsyncIterator[str]:
    """`database_url` as is, or a fresh database on the local server, dropped at the end."""
    if database_url:
        yield database_url
        return
    name = f"wdr_eval_{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(PG_ADMIN_URL, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _admin_url_for(name)
    finally:
        async with await psycopg.AsyncConnection.connect(PG_ADMIN_URL, autocommit=True) as conn:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class RunEvidence:
    """Run-level fingerprints: PostgreSQL and DuckDB tables before and after all cases."""

    pg_before: dict[str, str] = field(default_factory=dict)
    pg_after: dict[str, str] = field(default_factory=dict)
    duckdb_before: dict[str, str] = field(default_factory=dict)
    duckdb_after: dict[str, str] = field(default_factory=dict)

    @property
    def changes(self) -> list[str]:
        return changed(self.pg_before, self.pg_after) + changed(
            self.duckdb_before, self.duckdb_after
        )


class Harness:
    """Everything one eval run holds open. Use `Harness.open(...)` as a context manager."""

    def __init__(
        self,
        *,
        context: Context,
        warehouse: DuckDBWarehouse,
        database_url: str,
        mode: Mode,
        server: Any = None,
        recordings: dict[str, dict[str, Any]] | None = None,
        policy: AccessPolicy | None = None,
    ) -> None:
        self.context = context
        self.policy = policy or AccessPolicy()
        self.warehouse = warehouse
        self.database_url = database_url
        self.mode: Mode = mode
        self.server = server
        self.recordings = recordings or {}
        self.recorded: dict[str, dict[str, Any]] = {}
        self.graph = build_graph().compile()
        self.allowed = context.safety.allowed_tables
        self.max_rows = context.safety.max_rows
        self.evidence = RunEvidence()
        self._checksums = warehouse.table_checksums()

    @property
    def strict(self) -> bool:
        return self.mode == "replay"

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        *,
        mode: Mode = "replay",
        settings: Settings | None = None,
        statement_timeout_s: float = 3.0,
        recordings: dict[str, dict[str, Any]] | None = None,
    ) -> AsyncIterator[Harness]:
        """Set up PostgreSQL (a fresh database unless DATABASE_URL is set), the DuckDB
        warehouse and the model: the local Converse server replaying recordings (`replay`,
        `recorded`) or the configured Bedrock model (`live`)."""
        settings = settings or Settings()
        async with AsyncExitStack() as stack:
            url = await stack.enter_async_context(eval_database(settings.database_url))
            warehouse = await asyncio.to_thread(
                DuckDBWarehouse,
                now=datetime.now(UTC),
                statement_timeout_s=statement_timeout_s,
                statement_log_size=100_000,
            )
            stack.callback(warehouse.close)
            llm, server = cls._open_model(mode, settings, stack)
            # The service's own wiring, over the eval database, with an in-process cache,
            # this warehouse (it keeps every statement) and the replaying model.
            run_settings = settings.model_copy(
                update={
                    "database_url": url,
                    "redis_url": None,
                    "auto_migrate": True,
                    "seed_demo": True,
                    "pg_pool_max": 4,
                    # the replay asks the model once per case: no per-tenant budget here
                    "llm_rate_limit": "1000000/minute",
                }
            )
            resources = await stack.enter_async_context(
                open_resources(run_settings, llm=llm, warehouse=warehouse)
            )
            context = resources.context
            harness = cls(
                context=context,
                warehouse=warehouse,
                database_url=url,
                mode=mode,
                server=server,
                recordings=recordings,
                policy=resources.auth.policy,
            )
            harness.evidence.pg_before = await pg_checksums(url)
            harness.evidence.duckdb_before = dict(harness._checksums)
            yield harness
            harness.evidence.pg_after = await pg_checksums(url)
            harness.evidence.duckdb_after = warehouse.table_checksums()

    @staticmethod
    def _open_model(
        mode: Mode, settings: Settings, stack: AsyncExitStack
    ) -> tuple[SqlGenerator, Any]:
        if mode == "live":
            if not settings.bedrock_model_id:
                raise SystemExit("--live needs BEDROCK_MODEL_ID (and AWS credentials) to be set")
            return (
                RecordingBedrockSqlGenerator(
                    model_id=settings.bedrock_model_id,
                    region=settings.aws_region,
                    endpoint_url=settings.bedrock_endpoint_url,
                    timeout_s=settings.bedrock_timeout_s,
                ),
                None,
            )
        from fakes.bedrock_converse import DUMMY_CREDENTIALS, MODEL_ID, REGION, ConverseServer

        server = ConverseServer().start()
        stack.callback(server.stop)
        generator = BedrockSqlGenerator(
            model_id=MODEL_ID,
            region=REGION,
            endpoint_url=server.url,
            credentials=DUMMY_CREDENTIALS,
            timeout_s=10.0,
        )
        return generator, server

    # -------------------------------------------------------------- one case

    def _prepare_model(self, case: Case) -> Callable[[], int]:
        """Point the model at this case's answer; returns a counter of model calls."""
        if self.mode == "live":
            llm = self.context.llm
            assert isinstance(llm, RecordingBedrockSqlGenerator)
            start = llm.calls
            return lambda: llm.calls - start
        response = case.model_response
        if self.mode == "recorded" and case.id in self.recordings:
            response = self.recordings[case.id]
        reply = converse_reply(response)
        server = self.server
        start, gstart = len(server.requests), len(server.grounding_requests)
        server.responder = lambda _request: reply
        # a recorded grounded answer (express_intent) answers the grounding turn; else no
        # metric fits and the recorded SQL answers the SQL turn
        grounded = getattr(reply, "name", None) == INTENT_TOOL_NAME
        server.intent_responder = (lambda _request: reply) if grounded else None
        # questions put to the model: a question grounds first (one turn, maybe a SQL turn
        # after it); a metric with generator: llm and no question has its SQL turn only
        return lambda: (len(server.grounding_requests) - gstart) or (len(server.requests) - start)

    async def observe(self, case: Case) -> Observation:
        """Run one case through the graph and collect the evidence (no verdict)."""
        try:
            spec = build_spec(case)
        except ValidationError as exc:
            first = exc.errors()[0]
            detail = f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
            return Observation(source=SCHEMA_REJECTED, error_detail=detail)
        calls = self._prepare_model(case)
        log_start = len(self.warehouse.executed_statements)
        context = replace(self.context, cache=MemoryTTLCache())  # no reuse between cases
        started = time.perf_counter()
        error: str | None = None
        out: dict[str, Any] = {}
        try:
            for principal in ([case.primed_by] if case.primed_by else []) + [case.principal]:
                # another principal first (same caches), then the case's own
                out = await self.graph.ainvoke(
                    {
                        "widget_id": f"eval-{case.id}",
                        "spec": spec,
                        "access": self.access(principal),
                    },
                    context=context,
                )
        except Exception as exc:  # a bug in the graph: record it, fail the case, go on
            error = f"{type(exc).__name__}: {exc}"
        latency_ms = (time.perf_counter() - started) * 1000
        if self.mode == "live":
            llm = self.context.llm
            assert isinstance(llm, RecordingBedrockSqlGenerator)
            if case.uses_llm and llm.last_response is not None:
                self.recorded[case.id] = llm.last_response
        log = self.warehouse.executed_statements[log_start:]
        statements = [
            (log[i], log[i + 1] if i + 1 < len(log) else None) for i in range(0, len(log), 2)
        ]
        problems = [
            p
            for db_sql, duck_sql in statements
            for p in executed_problems(
                db_sql, duck_sql, allowed_tables=self.allowed, max_rows=self.max_rows
            )
        ]
        after = await asyncio.to_thread(self.warehouse.table_checksums)
        checksum_changes = changed(self._checksums, after)
        self._checksums = after
        response = out.get("response") or {}
        rows = list(response.get("data") or [])
        size = len(json.dumps(rows, default=str)) if response.get("executed") else 0
        return Observation(
            source=str(response.get("source", "error")),
            executed=bool(response.get("executed")),
            row_count=int(response.get("row_count", len(rows))),
            rows=rows,
            columns=[c["name"] for c in response.get("schema") or []],
            generated_sql=response.get("generated_sql"),
            error_detail=response.get("error_detail"),
            statements=statements,
            statement_problems=problems,
            checksum_changes=checksum_changes,
            llm_calls=calls(),
            latency_ms=latency_ms,
            nodes=[t["node"] for t in out.get("trace") or []],
            error=error,
            response_bytes=size,
            cache_hit=bool(response.get("cache_hit")),
        )

    def access(self, principal: dict[str, Any] | None) -> RowAccess:
        """The row access of a case's principal (None: the unrestricted dev principal)."""
        if principal is None:
            return UNRESTRICTED
        attrs = {"regions": principal["regions"]} if "regions" in principal else {}
        who = Principal.build(
            subject="eval", tenant=principal["tenant"], scopes=(), attributes=attrs, via="jwt"
        )
        return self.policy.access_for(who)

    async def run_case(self, case: Case) -> CaseResult:
        obs = await self.observe(case)
        verdict = judge(case, obs, max_rows=self.max_rows, strict=self.strict)
        result = case_result(case, obs, verdict)
        if self.mode != "replay":
            result.model_response = self.recorded.get(case.id) or self.recordings.get(case.id)
        return result

    async def run(
        self, cases: Sequence[Case], on_result: Callable[[CaseResult], None] | None = None
    ) -> list[CaseResult]:
        """Run cases one at a time (the statement log and fingerprints stay attributable)."""
        results = []
        for case in cases:
            result = await self.run_case(case)
            results.append(result)
            if on_result is not None:
                on_result(result)
        return results
