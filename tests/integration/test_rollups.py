"""Rollups over the real PostgreSQL and Redis, built by the embedded DuckDB lakehouse:
two instances build each partition once (statements counted), a rollup's answers equal
today's path's (rows compared) for every row-filter shape, partitions are replaced and
recorded with their build time and data version, and a changed definition is never read.

The clock is midnight UTC so that `last_30d` starts on a day: the rollups' answers must
then equal the warehouse's exactly (with `relative_ranges: floor` they differ otherwise
only by the first day's part before the range)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import pq
from psycopg_pool import AsyncConnectionPool

from adapters.duckdb_warehouse import DuckDBWarehouse
from adapters.identity import mint_token
from adapters.lakehouse import TABLES
from adapters.lease import RedisLeases
from adapters.pg_migrate import migrate
from adapters.rollups import PgRollups
from domain.access import UNRESTRICTED, AccessPolicy, RowAccess, load_policy
from domain.config import load_config
from domain.data_versions import TableChange
from domain.failures import FailureKind, PostgresFailure, WarehouseFailure
from domain.identity import DEV_PRINCIPAL, Principal
from domain.models import DataIntent, WidgetSpec
from domain.ports import FixedTableSchemas, SafetyPolicy, TableSchema
from domain.results import QueryResult
from domain.rollups import Rollup, RollupDef, RollupQuery
from graph.builder import build_graph
from graph.state import InputState
from metricsql.rollups import (
    compile_rollup,
    match,
    partitions_between,
    update_window,
    validate_rollups,
)
from service.changes import rebuild_rollups
from service.wiring import BootError
from tests.support.doubles import WAREHOUSE_TABLES, make_ctx
from tests.support.servers import (
    CONFIG_DIR,
    copy_config,
    create_database,
    drop_database,
    running_service,
    sea_lakehouse,
    sea_settings,
)

NOW = datetime(2026, 11, 26, tzinfo=UTC)  # midnight: relative day ranges are whole days
CFG = load_config()
ROLLUPS, _ = validate_rollups(
    CFG.rollups,
    metrics=CFG.metrics,
    routing=CFG.routing,
    table_columns={t: [c for c, _ in cols] for t, cols in TABLES.items()},
)
POLICY: AccessPolicy = load_policy(CONFIG_DIR / "access_policy.yaml")
DEV_ACCESS = POLICY.access_for(DEV_PRINCIPAL)


class CountingWarehouse:
    """The embedded DuckDB warehouse, counting the statements it is sent."""

    def __init__(self, inner: DuckDBWarehouse) -> None:
        self.inner = inner
        self.name = inner.name
        self.statements: list[str] = []

    async def execute(
        self, sql: str, *, max_rows: int, tags: Mapping[str, str] | None = None
    ) -> QueryResult:
        self.statements.append(sql)
        return await self.inner.execute(sql, max_rows=max_rows, tags=tags)

    async def describe(self, tables: Sequence[str]) -> tuple[TableSchema, ...]:
        return await self.inner.describe(tables)

    async def ping(self) -> bool:
        return True


@pytest.fixture(scope="module")
def duck() -> Iterator[DuckDBWarehouse]:
    wh = DuckDBWarehouse(now=NOW)
    yield wh
    wh.close()


@pytest.fixture(scope="module")
def db() -> Iterator[str]:
    url = create_database("wdr_rollups")
    asyncio.run(migrate(url))
    yield url
    drop_database(url)


def _pool(url: str) -> AsyncConnectionPool:
    return AsyncConnectionPool(
        url,
        min_size=1,
        max_size=4,
        open=False,
        kwargs={"autocommit": True, "options": "-c TimeZone=UTC"},
    )


class Instance:
    def __init__(self, url: str, wh: CountingWarehouse, redis_url: str, prefix: str) -> None:
        self.pool = _pool(url)
        self.leases = RedisLeases(redis_url, prefix=prefix, ttl_s=60, heartbeat_s=0.5)
        self.store = PgRollups(
            self.pool,
            dict(ROLLUPS),
            warehouse=wh,
            leases=self.leases,
            clock=NOW.timestamp,
        )

    async def __aenter__(self) -> Instance:
        await self.pool.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.leases.aclose()
        await self.pool.close()


@pytest.fixture
async def built(
    db: str, duck: DuckDBWarehouse, redis_url: str, cache_namespace: str
) -> AsyncIterator[tuple[Instance, CountingWarehouse]]:
    """The demo rollups, built by two instances at once (module database: built once)."""
    wh = CountingWarehouse(duck)
    async with (
        Instance(db, wh, redis_url, cache_namespace) as a,
        Instance(db, wh, redis_url, cache_namespace) as b,
    ):
        await asyncio.gather(a.store.maintain(NOW), b.store.maintain(NOW))
        yield a, wh


def _partitions(r: Rollup, first: datetime) -> list[datetime]:
    return partitions_between(r, first, NOW)


async def test_two_instances_build_each_partition_once(
    fresh_pg_url: str, duck: DuckDBWarehouse, redis_url: str, cache_namespace: str
) -> None:
    await migrate(fresh_pg_url)
    wh = CountingWarehouse(duck)
    async with (
        Instance(fresh_pg_url, wh, redis_url, cache_namespace) as a,
        Instance(fresh_pg_url, wh, redis_url, cache_namespace) as b,
    ):
        reports = await asyncio.gather(a.store.maintain(NOW), b.store.maintain(NOW))
        # where the data starts: once per table (two rollups read claim_events)
        expected = len({r.definition.table for r in ROLLUPS.values()})
        for r in ROLLUPS.values():
            known, first = await a.store.data_start(r)
            assert known and first is not None
            expected += len(_partitions(r, first))  # each partition
            built = [p for rep in reports for p in rep[r.name].built]
            assert sorted(built) == [p.isoformat() for p in _partitions(r, first)]
        assert len(wh.statements) == expected
        assert len(set(wh.statements)) == expected  # no statement twice
        # nothing missing, nothing older than its max age: nothing more runs
        await asyncio.gather(a.store.maintain(NOW), b.store.maintain(NOW))
        assert len(wh.statements) == expected


async def test_build_partitions_records_the_version_and_replaces_the_partition(
    fresh_pg_url: str, duck: DuckDBWarehouse, redis_url: str, cache_namespace: str
) -> None:
    await migrate(fresh_pg_url)
    wh = CountingWarehouse(duck)
    march = datetime(2026, 10, 1, tzinfo=UTC)
    async with Instance(fresh_pg_url, wh, redis_url, cache_namespace) as a:
        report = await a.store.build_partitions("claim_events_daily", [march], data_version="7")
        assert report.built == [march.isoformat()] and len(wh.statements) == 1
        # the same version again: already built from it, no statement
        again = await a.store.build_partitions(
            "claim_events_daily", [datetime(2026, 10, 17, tzinfo=UTC)], data_version="7"
        )
        assert again.skipped == [march.isoformat()] and len(wh.statements) == 1
        async with await psycopg.AsyncConnection.connect(fresh_pg_url) as conn:
            cur = await conn.execute(
                "SELECT data_version, built_at, row_count FROM rollup_partitions"
                " WHERE rollup = 'claim_events_daily'"
            )
            rows = await cur.fetchall()
            first_built = rows[0][1]
            assert [(r[0], r[2] > 0) for r in rows] == [("7", True)]
            count = await conn.execute("SELECT count(*) FROM rollup_claim_events_daily")
            n = (await count.fetchone() or [0])[0]
        # the version moved: rebuilt, replacing (not adding to) the partition's rows
        moved = await a.store.build_partitions("claim_events_daily", [march], data_version="8")
        assert moved.built == [march.isoformat()] and len(wh.statements) == 2
        # an instance that has not learned the new version yet asks for the older one: the
        # newer build stands (its rows are never older), no statement
        async with Instance(fresh_pg_url, wh, redis_url, cache_namespace) as lagging:
            lag = await lagging.store.build_partitions(
                "claim_events_daily", [march], data_version="7"
            )
        assert lag.skipped == [march.isoformat()] and len(wh.statements) == 2
        async with await psycopg.AsyncConnection.connect(fresh_pg_url) as conn:
            cur = await conn.execute(
                "SELECT data_version, built_at FROM rollup_partitions"
                " WHERE rollup = 'claim_events_daily'"
            )
            version, built_at = (await cur.fetchall())[0]
            assert version == "8" and built_at > first_built
            count = await conn.execute("SELECT count(*) FROM rollup_claim_events_daily")
            assert (await count.fetchone() or [0])[0] == n


def _access(regions: Any) -> RowAccess:
    """The access of a principal whose token carries these `regions` claims (None: none)."""
    attributes = {} if regions is None else {"regions": regions}
    principal = Principal.build(
        subject="s", tenant="default", scopes=(), attributes=attributes, via="jwt"
    )
    return POLICY.access_for(principal)


ACCESSES: dict[str, RowAccess] = {
    "dev principal (unrestricted)": DEV_ACCESS,
    "no claim": _access(None),
    "empty list": _access([]),
    "one region": _access(["west"]),
    "several regions": _access(["midwest", "west"]),
    "every region": _access(["northeast", "southeast", "midwest", "southwest", "west"]),
    "a region twice": _access(["west", "west"]),
    "a bare string claim": _access("west"),
    "a number as a claim": _access([1]),
    "an unknown region": _access(["atlantis"]),
    "a quote in a value": _access(["o'hare"]),
}

EXTRA_INTENTS: dict[str, DataIntent] = {
    "paid-by-region-monthly": DataIntent(
        metric_id="claims_paid_amount", dimensions=["region"], grain="month", time_range="last_90d"
    ),
    "alerts-by-severity-region-daily": DataIntent(
        metric_id="alerts_raised_count",
        dimensions=["severity", "region"],
        grain="day",
        time_range="last_7d",
    ),
    "filed-distinct-daily-exact": DataIntent(
        metric_id="claims_filed_count",
        dimensions=["region", "channel"],
        grain="day",
        time_range="last_7d",
    ),
    "alerts-absolute-month": DataIntent(
        metric_id="alerts_raised_count",
        dimensions=["service"],
        time_range={"start": "2026-09-01T00:00:00Z", "end": "2026-10-01T00:00:00Z"},  # type: ignore[arg-type]
    ),
}


def _specs() -> dict[str, WidgetSpec]:
    out = {
        wid: spec
        for wid, spec in CFG.widgets.items()
        if CFG.routing[spec.data_intent.metric_id].backend == "databricks"
        and not spec.data_intent.question
    }
    for wid, intent in EXTRA_INTENTS.items():
        out[wid] = WidgetSpec(title=wid, kind="table", data_intent=intent, mock_data=[{"v": 1}])
    return out


def _same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x.keys() != y.keys():
            return False
        for k in x:
            u, v = x[k], y[k]
            if isinstance(u, float) or isinstance(v, float):
                if u is None or v is None or not math.isclose(u, v, rel_tol=1e-9):
                    return False
            elif u != v:
                return False
    return True


@pytest.mark.parametrize("who", list(ACCESSES))
async def test_rollup_answers_equal_todays_path_under_every_row_filter(
    built: tuple[Instance, CountingWarehouse], duck: DuckDBWarehouse, who: str
) -> None:
    inst, _ = built
    access = ACCESSES[who]
    schemas = FixedTableSchemas(await duck.describe(sorted(WAREHOUSE_TABLES)))
    common: dict[str, Any] = {
        "safety": SafetyPolicy(allowed_tables=WAREHOUSE_TABLES, max_rows=10_000),
        "clock": NOW.timestamp,
        "table_schemas": schemas,
        "default_row_limit": 1000,
    }
    today_wh = CountingWarehouse(duck)
    rollup_wh = CountingWarehouse(duck)
    today = make_ctx(warehouse=today_wh, **common)
    with_rollups = make_ctx(warehouse=rollup_wh, rollups=inst.store, **common)
    graph = build_graph().compile()
    answered = []
    for wid, spec in _specs().items():
        run: InputState = {"widget_id": wid, "spec": spec, "access": access}
        want = (await graph.ainvoke(run, context=today))["response"]
        got = (await graph.ainvoke(run, context=with_rollups))["response"]
        assert want["source"] == "databricks", want
        assert _same(got["data"], want["data"]), (wid, got["data"], want["data"])
        if got["source"] == "rollup":
            answered.append(wid)
            assert got["rollup"]["name"] in ROLLUPS
            assert [c["name"] for c in got["schema"]] == [c["name"] for c in want["schema"]]
        if "region" in spec.data_intent.dimensions and access.tables:
            allowed = set(access.tables[0].values)
            assert {r["region"] for r in got["data"]} <= allowed
    # every widget was answered from a rollup (claims-filed-by-region's distinct claims
    # from claim_events_claims_daily's rows), with no statement
    assert sorted(answered) == sorted(_specs())
    assert rollup_wh.statements == []


async def test_a_changed_definition_is_never_read(
    built: tuple[Instance, CountingWarehouse], redis_url: str, cache_namespace: str, db: str
) -> None:
    r = ROLLUPS["alerts_daily"]
    changed = Rollup(r.name, r.definition, r.measures, signature="0" * 16)
    inst, wh = built
    store = PgRollups(inst.pool, {r.name: changed}, warehouse=wh)
    intent = CFG.widgets["critical-alerts-by-service"].data_intent
    metric = CFG.metrics[intent.metric_id]
    query = match(changed, metric, intent, UNRESTRICTED, now=NOW)
    current = match(r, metric, intent, UNRESTRICTED, now=NOW)
    assert isinstance(query, RollupQuery) and isinstance(current, RollupQuery)
    assert await store.answer(query, now=NOW.timestamp()) is None
    assert await inst.store.answer(current, now=NOW.timestamp()) is not None


async def test_a_read_is_one_round_trip_and_a_failed_one_leaves_no_transaction(
    built: tuple[Instance, CountingWarehouse],
    db: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Coverage and rows in one snapshot, sent with one sync: one ReadyForQuery per read
    in libpq's own trace of the connection (psycopg's `transaction()` would take three)."""
    _, wh = built
    intent = CFG.widgets["critical-alerts-by-service"].data_intent
    query = match(
        ROLLUPS["alerts_daily"], CFG.metrics[intent.metric_id], intent, UNRESTRICTED, now=NOW
    )
    assert isinstance(query, RollupQuery)
    pool = AsyncConnectionPool(
        db, min_size=1, max_size=1, open=False, kwargs={"autocommit": True}
    )  # one connection: the traced one
    await pool.open()
    trace = tmp_path / "libpq.trace"
    try:
        with trace.open("w") as out:
            async with pool.connection() as conn:
                conn.pgconn.trace(out.fileno())
                conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
            store = PgRollups(pool, dict(ROLLUPS), warehouse=wh)
            answer = await store.answer(query, now=NOW.timestamp())
            async with pool.connection() as conn:
                conn.pgconn.untrace()
        assert answer is not None and answer.rows
        assert trace.read_text().count("ReadyForQuery") == 1
        # a read that fails (its table is gone) answers None, and rolls its transaction
        # back itself: the pool gets the connection idle (it would warn as it rolls back)
        # (and says nothing: when the failure comes back before the pipeline's sync, the
        # sync's `pipeline aborted` is not logged over it: the first failure is raised)
        gone = dataclasses.replace(query, sql="SELECT 1 FROM rollup_gone", template="")
        with caplog.at_level(logging.WARNING, logger="psycopg"):
            for _ in range(50):
                assert await store.answer(gone, now=NOW.timestamp()) is None
        assert not [r for r in caplog.records if r.name.startswith("psycopg")]
        async with pool.connection() as conn:
            assert conn.info.transaction_status is pq.TransactionStatus.IDLE
        assert await store.answer(query, now=NOW.timestamp()) is not None
    finally:
        await pool.close()


# ------------------------------------------------------------------ the service


async def test_the_service_answers_from_a_rollup_and_says_so(
    tmp_path: Path, fresh_pg_url: str, redis_url: str, cache_namespace: str
) -> None:
    async with running_service(
        database_url=fresh_pg_url,
        redis_url=redis_url,
        cache_prefix=cache_namespace,
        data_dir=tmp_path,
        rollups_enabled=True,
    ) as svc:
        store = svc.res.context.rollups
        assert isinstance(store, PgRollups)
        await store.maintain()  # with the service's own maintainer: each partition once
        r = await svc.data("claims-paid-weekly", trace=True)
        body = r.json()
        assert r.status_code == 200 and body["source"] == "rollup", body
        assert body["backend"] == "databricks" and body["rollup"]["name"] == "claim_events_daily"
        assert body["rollup"]["data_age_s"] >= 0 and body["data"]
        assert [t["node"] for t in body["trace"]][2] == "rollup_query"
        cached = (await svc.data("claims-paid-weekly")).json()
        assert cached["cache_hit"] and cached["source"] == "rollup" and cached["rollup"]
        # count-distinct over 30 days: from the rollup that keeps the claims' ids
        filed = (await svc.data("claims-filed-by-region")).json()
        assert filed["source"] == "rollup", filed
        assert filed["rollup"]["name"] == "claim_events_claims_daily"


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda r: r["claim_events_daily"]["metrics"].append("no_such_metric"), "no_such_metric"),
        (lambda r: r["alerts_daily"]["dimensions"].append("colour"), "no column 'colour'"),
        (lambda r: r["devices_daily"].update(table="main.claims.nope"), "main.claims.nope"),
    ],
)
async def test_boot_refuses_a_bad_rollup(
    tmp_path: Path, fresh_pg_url: str, edit: Callable[[dict[str, Any]], None], needle: str
) -> None:
    cfg = copy_config(tmp_path)
    raw = yaml.safe_load((cfg / "rollups.yaml").read_text())
    edit(raw["rollups"])
    (cfg / "rollups.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(BootError) as err:
        async with running_service(
            database_url=fresh_pg_url, config_dir=cfg, data_dir=tmp_path, rollups_enabled=True
        ):
            pass
    assert needle in str(err.value)


class FailingWarehouse(CountingWarehouse):
    async def execute(
        self, sql: str, *, max_rows: int, tags: Mapping[str, str] | None = None
    ) -> QueryResult:
        self.statements.append(sql)
        raise WarehouseFailure("the warehouse is down", kind=FailureKind.databricks_unavailable)


async def test_a_failed_build_is_reported_leaves_nothing_and_frees_the_lease(
    fresh_pg_url: str, duck: DuckDBWarehouse, redis_url: str, cache_namespace: str
) -> None:
    await migrate(fresh_pg_url)
    month = datetime(2026, 10, 1, tzinfo=UTC)
    async with Instance(fresh_pg_url, FailingWarehouse(duck), redis_url, cache_namespace) as a:
        report = await a.store.build_partitions("alerts_daily", [month])
        assert report.built == [] and "databricks_unavailable" in report.failed[month.isoformat()]
        intent = DataIntent(
            metric_id="alerts_raised_count",
            time_range={"start": "2026-10-01T00:00:00Z", "end": "2026-10-08T00:00:00Z"},  # type: ignore[arg-type]
        )
        query = match(
            ROLLUPS["alerts_daily"],
            CFG.metrics["alerts_raised_count"],
            intent,
            UNRESTRICTED,
            now=NOW,
        )
        assert isinstance(query, RollupQuery)
        assert await a.store.answer(query, now=NOW.timestamp()) is None  # not built: today's path
    wh = CountingWarehouse(duck)
    async with Instance(fresh_pg_url, wh, redis_url, cache_namespace) as b:
        # the lease was released: another instance builds it at once
        report = await b.store.build_partitions("alerts_daily", [month])
        assert report.built == [month.isoformat()] and len(wh.statements) == 1
        answer = await b.store.answer(query, now=NOW.timestamp())
        assert answer is not None and answer.rows[0]["value"] > 0


async def test_an_unreadable_store_is_a_postgres_failure(
    built: tuple[Instance, CountingWarehouse],
) -> None:
    _, wh = built
    # nothing listens on port 1: the pool cannot hand out a connection
    pool = AsyncConnectionPool(
        "postgresql://postgres@127.0.0.1:1/nowhere?connect_timeout=1",
        min_size=1,
        open=False,
        timeout=1.0,
        reconnect_timeout=1.0,
    )
    await pool.open(wait=False)
    store = PgRollups(pool, dict(ROLLUPS), warehouse=wh)
    intent = CFG.widgets["critical-alerts-by-service"].data_intent
    query = match(
        ROLLUPS["alerts_daily"], CFG.metrics[intent.metric_id], intent, UNRESTRICTED, now=NOW
    )
    assert isinstance(query, RollupQuery)
    try:
        with pytest.raises(PostgresFailure):
            await store.answer(query, now=NOW.timestamp())
        with pytest.raises(PostgresFailure):  # the catch-up before a versioned read too
            await store.catch_up("alerts_daily", data_version="3", now=NOW.timestamp())
    finally:
        await pool.close()


async def test_two_services_share_one_rollup_built_once_over_statement_execution(
    tmp_path: Path, fresh_pg_url: str, redis_url: str, cache_namespace: str
) -> None:
    """Two services (one PostgreSQL, one Redis, one Statement Execution server counting
    statements, the real connector): each partition is built by one statement, and both
    answer from the same rollup with no further statement."""
    with sea_lakehouse() as sea:
        common: dict[str, Any] = {
            "database_url": fresh_pg_url,
            "redis_url": redis_url,
            "cache_prefix": cache_namespace,
            "rollups_enabled": True,
            **sea_settings(sea),
        }
        async with (
            running_service(data_dir=tmp_path / "a", **common) as a,
            running_service(data_dir=tmp_path / "b", **common) as b,
        ):
            stores = [s.res.context.rollups for s in (a, b)]
            assert all(isinstance(s, PgRollups) for s in stores)
            await asyncio.gather(*(s.maintain() for s in stores))  # type: ignore[union-attr]
            builds = [t for t in sea.statement_texts if "AS bucket" in t]
            assert builds and len(builds) == len(set(builds))  # each partition once
            before = len(sea.statement_texts)
            for svc in (a, b):
                for widget in ("claims-paid-weekly", "alert-mttr-by-severity"):
                    body = (await svc.data(widget, refresh=True)).json()
                    assert body["source"] == "rollup", body
            assert len(sea.statement_texts) == before


SECRET = "rollup-integration-secret-0123456789"
SCOPES = "data:read widgets:read widgets:write metrics:read"
EVERY_REGION = ["midwest", "northeast", "southeast", "southwest", "west"]


def bearer(regions: Any = None) -> dict[str, str]:
    claims = {} if regions is None else {"regions": regions}
    tok = mint_token(SECRET, tenant="default", scopes=SCOPES, claims=claims, audience="wdr")
    return {"Authorization": f"Bearer {tok}"}


async def test_signed_in_identities_see_only_their_regions_rows_from_one_rollup(
    tmp_path: Path, fresh_pg_url: str, redis_url: str, cache_namespace: str
) -> None:
    async with running_service(
        database_url=fresh_pg_url,
        redis_url=redis_url,
        cache_prefix=cache_namespace,
        data_dir=tmp_path,
        rollups_enabled=True,
        auth_jwt_secret=SECRET,
        auth_audience="wdr",
    ) as svc:
        store = svc.res.context.rollups
        assert isinstance(store, PgRollups)
        await store.maintain()
        spec = {
            "title": "Paid by region",
            "kind": "bar",
            "data_intent": {
                "metric_id": "claims_paid_amount",
                "dimensions": ["region"],
                "time_range": "last_90d",
            },
            "mock_data": [{"region": "west", "value": 1}],
        }
        put = await svc.client.put("/v1/widgets/paid-by-region", json=spec, headers=bearer())
        assert put.status_code in (200, 201), put.text

        async def regions_seen(regions: Any) -> dict[str, float]:
            body = (await svc.data("paid-by-region", headers=bearer(regions))).json()
            assert body["source"] == "rollup", body
            return {r["region"]: r["value"] for r in body["data"]}

        assert await regions_seen(None) == {}  # no claim: no rows
        assert await regions_seen([]) == {}
        west = await regions_seen(["west"])
        assert set(west) == {"west"}
        assert set(await regions_seen(["west", "midwest"])) == {"west", "midwest"}
        assert set(await regions_seen(["atlantis"])) == set()
        everything = await regions_seen(EVERY_REGION)
        assert set(everything) == set(EVERY_REGION)
        for region in EVERY_REGION:  # one rollup: each identity's rows are the same rows
            assert await regions_seen([region]) == {region: everything[region]}


async def test_a_moved_data_version_rebuilds_the_update_window_once_across_instances(
    fresh_pg_url: str, duck: DuckDBWarehouse, redis_url: str, cache_namespace: str
) -> None:
    await migrate(fresh_pg_url)
    wh = CountingWarehouse(duck)
    async with (
        Instance(fresh_pg_url, wh, redis_url, cache_namespace) as a,
        Instance(fresh_pg_url, wh, redis_url, cache_namespace) as b,
    ):
        await asyncio.gather(a.store.maintain(NOW), b.store.maintain(NOW))
        built = len(wh.statements)
        change = TableChange(source="main.ops.alerts", old=4, new=5, seen_at=NOW.timestamp())
        rebuilds = [rebuild_rollups(inst.store)(change) for inst in (a, b)]
        await asyncio.gather(*(r for r in rebuilds if r is not None))
        assert None not in rebuilds
        window = update_window(ROLLUPS["alerts_daily"], NOW)
        assert len(wh.statements) == built + len(window)  # one statement per partition
        assert all("main.ops.alerts" in s for s in wh.statements[built:])
        # the version holds: a catch-up (any instance) runs nothing
        ok = await b.store.catch_up("alerts_daily", data_version="5", now=NOW.timestamp())
        assert ok and len(wh.statements) == built + len(window)


# a distinct count whose values do repeat across days (a device has claims on several):
# summing per-day distinct counts would over-count; counting the rollup's rows is exact
DEVICES_METRIC = CFG.metrics["claims_filed_count"].model_copy(
    update={
        "name": "devices_with_claims",
        "definition": CFG.metrics["claims_filed_count"].definition.model_copy(
            update={"measure": "count(DISTINCT device_id)", "default_filters": []}
        ),
    }
)
DEVICES_ROLLUP = compile_rollup(
    "claim_devices_daily",
    RollupDef(
        table="main.claims.claim_events",
        time_column="event_ts",
        grain="day",
        partition_by="month",
        relative_ranges="floor",
        dimensions=["region", "channel", "device_id"],
        measures={"events": "count(*)"},
        metrics=["devices_with_claims"],
    ),
)


def _duck_rows(duck: DuckDBWarehouse, sql: str) -> list[tuple[Any, ...]]:
    con = duck._con.cursor()  # the test's own read of the lakehouse the rollup was built from
    try:
        return [tuple(r) for r in con.execute(sql).fetchall()]
    finally:
        con.close()


@pytest.mark.parametrize("who", list(ACCESSES))
async def test_count_distinct_of_a_rollup_dimension_equals_the_warehouses_under_every_row_filter(
    db: str, duck: DuckDBWarehouse, redis_url: str, cache_namespace: str, who: str
) -> None:
    access = ACCESSES[who]
    async with Instance(db, CountingWarehouse(duck), redis_url, cache_namespace) as inst:
        store = PgRollups(
            inst.pool,
            {DEVICES_ROLLUP.name: DEVICES_ROLLUP},
            warehouse=CountingWarehouse(duck),
            leases=inst.leases,
            clock=NOW.timestamp,
        )
        await store.maintain(NOW)
        filters = access.table_filters(["main.claims.claim_events"])
        where = " AND ".join(
            "region IN (" + ", ".join("'" + v.replace("'", "''") + "'" for v in f.values) + ")"
            if f.values
            else "FALSE"
            for f in filters
        )
        cases: list[tuple[dict[str, Any], str]] = [
            ({"dimensions": ["region"], "time_range": "last_30d"}, "region"),
            ({"dimensions": ["channel"], "grain": "week", "time_range": "last_90d"}, "channel"),
            ({"time_range": "last_90d"}, ""),
        ]
        for kw, by in cases:
            intent = DataIntent(metric_id="devices_with_claims", **kw)
            query = match(DEVICES_ROLLUP, DEVICES_METRIC, intent, access, now=NOW)
            assert isinstance(query, RollupQuery), query
            answer = await store.answer(query, now=NOW.timestamp())
            assert answer is not None
            start = query.start.isoformat() if query.start else "1970-01-01T00:00:00+00:00"
            keys = [k for k in (by, "bucket" if "grain" in kw else "") if k]
            bucket = "date_trunc('week', event_ts) AS bucket" if "grain" in kw else ""
            select = ", ".join([*(k for k in keys if k != "bucket"), *([bucket] if bucket else [])])
            sql = (
                f"SELECT {select + ', ' if select else ''}count(DISTINCT device_id) AS value"
                f" FROM main.claims.claim_events WHERE event_ts >= TIMESTAMPTZ '{start}'"
                f" AND event_ts < TIMESTAMPTZ '{NOW.isoformat()}'"
                + (f" AND {where}" if where else "")
                + (f" GROUP BY {', '.join(str(i + 1) for i in range(len(keys)))}" if keys else "")
            )
            want = {(*(str(v) for v in r[:-1]), r[-1]) for r in _duck_rows(duck, sql)}
            got = {
                (
                    *(
                        str(datetime.fromisoformat(r[k])) if k == "bucket" else str(r[k])
                        for k in keys
                    ),
                    r["value"],
                )
                for r in answer.rows
            }
            if "grain" in kw:  # the series keeps its newest buckets: compare those
                want = {w for w in want if any(w[:-1] == g[:-1] for g in got)}
            assert got == want, (kw, who)
            if not keys and answer.rows[0]["value"]:  # the test can fail: per-day sums over-count
                days = _duck_rows(
                    duck,
                    "SELECT sum(n) FROM (SELECT count(DISTINCT device_id) AS n"
                    f" FROM main.claims.claim_events WHERE event_ts >= TIMESTAMPTZ '{start}'"
                    f" AND event_ts < TIMESTAMPTZ '{NOW.isoformat()}'"
                    + (f" AND {where}" if where else "")
                    + " GROUP BY date_trunc('day', event_ts))",
                )
                assert days[0][0] > answer.rows[0]["value"]


async def test_a_read_catches_up_from_what_the_process_saw_built(
    fresh_pg_url: str, duck: DuckDBWarehouse, redis_url: str, cache_namespace: str
) -> None:
    await migrate(fresh_pg_url)
    wh = CountingWarehouse(duck)
    now = NOW.timestamp()
    async with Instance(fresh_pg_url, wh, redis_url, cache_namespace) as a:
        assert await a.store.catch_up("claim_events_daily", data_version="3", now=now)
        assert len(wh.statements) == 1  # the update window: one partition
        await a.pool.close()  # from here on, any PostgreSQL round trip fails
        # the version it saw built, or an older one: answered without PostgreSQL
        assert await a.store.catch_up("claim_events_daily", data_version="3", now=now)
        assert await a.store.catch_up("claim_events_daily", data_version="2", now=now)
        # a newer one: PostgreSQL is asked (and fails here), nothing is assumed
        with pytest.raises(Exception):  # noqa: B017 - the pool's closed error, whatever its kind
            await a.store.catch_up("claim_events_daily", data_version="4", now=now)
        assert len(wh.statements) == 1
