"""The PostgreSQL gateway: allowlisted, parameterized KPI queries over kpi_metrics_history.

A metric runs here when its catalog definition (config/metrics.yaml) reads
`kpi_metrics_history` with an aggregation; its `dimensions` are the keys of the
`dimensions` jsonb its SQL may use (`postgres_problems` checks a definition; the boot
refuses one that fails it). A query is assembled from fixed SQL fragments chosen by the
metric's aggregation and the intent's shape (which of the metric's dimensions, whether a
time bucket is wanted, which filter operators); every value coming from an intent (metric
name, time range, grain, filter values, limit) reaches the server as a bound parameter
only. No identifier is ever taken from input: a dimension key comes from the catalog and
must be a plain lowercase name.

Result columns follow the warehouse convention: the requested dimensions (named as the
dimension), `bucket` (timestamptz) when grain != none, then `value`.

Aggregations:
- sum/avg/max/min: the aggregate of the points in range, per dimension (and bucket).
- last: each series (one full `dimensions` combination) contributes its latest point in the
  range (per bucket when grain is set); these snapshots are then summed per requested
  dimension, so a KPI without dimensions is the current total over all series.
"""

from __future__ import annotations

import logging
import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, LiteralString, cast

import psycopg
import psycopg.errors
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from adapters.deadline import within
from adapters.pg_connections import check_connection, connection_keepalives
from adapters.pg_errors import postgres_failure
from domain.access import SeriesFilter
from domain.failures import FailureKind, InvalidIntent, PostgresFailure
from domain.jsonsafe import json_safe, portable_type
from domain.models import DataIntent, Filter, MetricDef, resolve_time_range, validate_intent
from domain.results import Column, QueryResult

logger = logging.getLogger(__name__)

HISTORY_TABLE = "kpi_metrics_history"

# A dimension key the SQL may name: a plain lowercase name from the catalog.
_DIMENSION_KEY = re.compile(r"[a-z][a-z0-9_]{0,62}")


def dimension_sql(key: str) -> str:
    """The only SQL a dimension can become: its key looked up in the `dimensions` jsonb
    (a plain name: postgres_problems refuses any other at boot and before each query)."""
    assert _DIMENSION_KEY.fullmatch(key), key
    return f"dimensions->>'{key}'"


def postgres_problems(metric: MetricDef) -> list[str]:
    """Why this gateway cannot serve `metric` (empty: it can). Checked at boot for every
    metric routed to postgres, and before every query."""
    d = metric.definition
    problems = [f"metric {metric.name!r} is not a {HISTORY_TABLE} metric with an aggregation"]
    if d.table == HISTORY_TABLE and d.aggregation is not None:
        problems = []
    problems += [
        f"metric {metric.name!r}: dimension key {key!r} is not a plain lowercase name"
        for key in d.dimensions
        if not _DIMENSION_KEY.fullmatch(key)
    ]
    return problems


_AGGREGATES: Mapping[str, str] = {"sum": "sum", "avg": "avg", "max": "max", "min": "min"}
_FILTER_SQL: Mapping[str, str] = {
    "=": "{col} = %({p})s",
    "!=": "{col} <> %({p})s",
    "in": "{col} = ANY(%({p})s)",
    "not_in": "{col} <> ALL(%({p})s)",
}
_BUCKET_SQL = "date_trunc(%(grain)s, recorded_at, 'UTC')"


@dataclass(frozen=True, slots=True)
class PlannedQuery:
    sql: str
    params: dict[str, Any]
    truncate_at: int | None  # rows beyond this are dropped and the result flagged truncated
    keep_last: bool = False  # truncating keeps the last rows (a time series' newest buckets)


# ------------------------------------------------------------------------------ planning


def _param_text(value: Any) -> str:
    """Filter values compare with jsonb ->> text, so bind them as text (JSON spelling for bools)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _check_intent(metric: MetricDef, intent: DataIntent) -> tuple[str, ...]:
    """The metric's dimension keys, once the metric and the intent are both servable."""
    unservable = postgres_problems(metric)
    if unservable:
        raise PostgresFailure("; ".join(unservable), kind=FailureKind.postgres_unmapped)
    d = metric.definition
    dimensions = tuple(d.dimensions)
    if intent.metric_id != metric.name:
        raise InvalidIntent(f"intent is for metric {intent.metric_id!r}, not {metric.name!r}")
    errors = validate_intent(intent, {metric.name: metric})
    filters = [*d.default_filters, *intent.filters]
    errors += [
        f"dimension {dim!r} is not served by the PostgreSQL query of {metric.name!r}"
        for dim in intent.dimensions
        if dim not in dimensions
    ]
    errors += [
        f"filter column {f.column!r} is not served by the PostgreSQL query of {metric.name!r}"
        for f in filters
        if f.column not in dimensions
    ]
    errors += [
        f"filter operator {f.op!r} is not supported on PostgreSQL metrics (use =, !=, in, not_in)"
        for f in filters
        if f.op not in _FILTER_SQL
    ]
    if errors:
        raise InvalidIntent("; ".join(errors))
    return dimensions


def _filter_clauses(filters: list[Filter], params: dict[str, Any]) -> list[str]:
    clauses = []
    for i, f in enumerate(filters):
        name = f"f{i}"
        col = dimension_sql(f.column)  # one of the metric's dimensions (_check_intent)
        if isinstance(f.value, list):
            params[name] = [_param_text(v) for v in f.value]
        else:
            params[name] = _param_text(f.value)
        clauses.append(_FILTER_SQL[f.op].format(col=f"({col})", p=name))
    return clauses


def _row_filter_clause(
    row_filter: SeriesFilter, dimensions: tuple[str, ...], params: dict[str, Any]
) -> str:
    """Row-level security on the series' dimension key, as a bound parameter. No values
    match nothing (`= ANY('{}')` is false): a principal without the claim sees no points."""
    if row_filter.dimension not in dimensions:
        # boot validation refuses such a policy; stay closed if it slips through
        raise PostgresFailure(
            f"row filter on unknown dimension {row_filter.dimension!r}",
            kind=FailureKind.postgres_unmapped,
        )
    params["rls"] = list(row_filter.values)
    return f"({dimension_sql(row_filter.dimension)}) = ANY(%(rls)s)"


def plan_query(
    metric: MetricDef,
    intent: DataIntent,
    *,
    now: datetime,
    max_rows: int,
    row_filter: SeriesFilter | None = None,
) -> PlannedQuery:
    """Validate the intent and build the fixed-shape SQL plus its bound parameters.
    `row_filter` (the principal's row-level security on this metric's series) is ANDed in."""
    dimensions = _check_intent(metric, intent)
    start, end = resolve_time_range(intent.time_range, now)
    params: dict[str, Any] = {"metric": metric.name}
    where = ["metric_name = %(metric)s"]
    if start is not None:
        params["start"] = start
        where.append("recorded_at >= %(start)s")
    params["end"] = end
    where.append("recorded_at < %(end)s")
    where += _filter_clauses([*metric.definition.default_filters, *intent.filters], params)
    if row_filter is not None:
        where.append(_row_filter_clause(row_filter, dimensions, params))

    bucketed = intent.grain != "none"
    if bucketed:
        params["grain"] = intent.grain
    if intent.limit is not None:
        params["limit"] = min(intent.limit, max_rows)
        truncate_at = None
    else:
        params["limit"] = max_rows + 1
        truncate_at = max_rows

    dims = [(name, dimension_sql(name)) for name in intent.dimensions]
    group_cols = [f'{expr} AS "{name}"' for name, expr in dims]
    if bucketed:
        group_cols.append("bucket")
    n_group = len(group_cols)
    where_sql = "\n  AND ".join(where)

    aggregation = metric.definition.aggregation
    if aggregation == "last":
        inner_bucket = f", {_BUCKET_SQL} AS bucket" if bucketed else ""
        inner_key = "dimensions, bucket" if bucketed else "dimensions"
        select = ", ".join([*group_cols, "sum(value) AS value"])
        sql = (
            "WITH latest AS (\n"
            f"  SELECT DISTINCT ON ({inner_key}) dimensions{inner_bucket}, value\n"
            f"  FROM {HISTORY_TABLE}\n"
            f"  WHERE {where_sql}\n"
            f"  ORDER BY {inner_key}, recorded_at DESC\n"
            ")\n"
            f"SELECT {select}\nFROM latest"
        )
    else:
        func = _AGGREGATES[cast(str, aggregation)]
        cols = [c if c != "bucket" else f"{_BUCKET_SQL} AS bucket" for c in group_cols]
        select = ", ".join([*cols, f"{func}(value) AS value"])
        sql = f"SELECT {select}\nFROM {HISTORY_TABLE}\nWHERE {where_sql}"

    if n_group:
        sql += "\nGROUP BY " + ", ".join(str(i) for i in range(1, n_group + 1))
    if bucketed:
        sql = _newest_buckets(sql, [name for name, _ in dims])
    else:  # categories: largest first
        order = [f"{n_group + 1} DESC NULLS LAST", *(str(i) for i in range(1, n_group + 1))]
        sql += "\nORDER BY " + ", ".join(order) + "\nLIMIT %(limit)s"
    return PlannedQuery(sql=sql, params=params, truncate_at=truncate_at, keep_last=bucketed)


def _newest_buckets(grouped_sql: str, dimensions: list[str]) -> str:
    """A time series limited to %(limit)s rows keeps its NEWEST rows, in ascending order.

    The inner query takes the first rows in exactly the reverse of the output order
    (bucket DESC, dimensions DESC: the tail of the full ascending series); the outer one
    puts them back in order (bucket, then the dimensions, each ASC). Dimension names are
    the metric's dimension keys (plain names from the catalog), never input.
    """
    columns = [f'"{name}"' for name in dimensions]
    bucket_pos = len(dimensions) + 1  # select list: dimensions, bucket, value
    newest = ", ".join(f"{i} DESC" for i in [bucket_pos, *range(1, bucket_pos)])
    oldest = ", ".join(["bucket", *columns])
    select = ", ".join([*columns, "bucket", "value"])
    return (
        f"SELECT {select}\nFROM (\n"
        + textwrap.indent(f"{grouped_sql}\nORDER BY {newest}\nLIMIT %(limit)s", "  ")
        + f"\n) AS series\nORDER BY {oldest}"
    )


def _truncate(rows: list[dict[str, Any]], plan: PlannedQuery) -> tuple[list[dict[str, Any]], bool]:
    """At most `plan.truncate_at` rows (the last ones for a time series), and whether any went."""
    keep = plan.truncate_at
    if keep is None or len(rows) <= keep:
        return rows, False
    return (rows[len(rows) - keep :] if plan.keep_last else rows[:keep]), True


# ------------------------------------------------------------------------------ gateway


def _type_name(oid: int) -> str:
    info = psycopg.adapters.types.get(oid)
    return info.name if info is not None else "unknown"


class PgGateway:
    """Runs allowlisted metric queries on a pooled async connection (read-only, time-boxed).

    The pool opens without waiting for PostgreSQL, checks each connection before handing
    it out (a connection broken by a restart or network cut is replaced, never reused:
    `check_connection`, without a round trip for a healthy idle one), and keeps retrying in the background with a short give-up period so it recovers within a
    few seconds of PostgreSQL coming back.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        statement_timeout_ms: int = 3000,
        connect_timeout_s: float = 2.0,
        pool_timeout_s: float = 2.0,
        reconnect_timeout_s: float = 5.0,
        max_rows: int = 10_000,
        deadline_s: float | None = None,
        keepalives_idle_s: int = 5,
    ) -> None:
        """`deadline_s` bounds each query end to end on the client (default: the statement
        timeout + 1 s): the server's statement_timeout cannot fire on a slow or silent link."""
        self._statement_timeout_ms = int(statement_timeout_ms)
        self.deadline_s = deadline_s if deadline_s is not None else statement_timeout_ms / 1000 + 1
        self._pool_timeout_s = pool_timeout_s
        self._max_rows = max_rows
        self._pool: AsyncConnectionPool = AsyncConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            open=False,
            kwargs={
                "autocommit": True,
                "options": "-c TimeZone=UTC",
                "application_name": "resolver",
                **connection_keepalives(connect_timeout_s, keepalives_idle_s),
            },
            check=check_connection,
            timeout=pool_timeout_s,
            reconnect_timeout=reconnect_timeout_s,
            name="resolver-pg",
        )

    @property
    def pool(self) -> AsyncConnectionPool:
        """The shared pool (generation log and registry store use it too)."""
        return self._pool

    async def open(self) -> None:
        """Start the pool; never fails because PostgreSQL is down right now."""
        await self._pool.open(wait=False)

    async def close(self) -> None:
        await self._pool.close()

    def has_query(self, metric: MetricDef) -> bool:
        return not postgres_problems(metric)

    def render_sql(
        self,
        metric: MetricDef,
        intent: DataIntent,
        *,
        now: float,
        row_filter: SeriesFilter | None = None,
    ) -> str:
        """The SQL text that would run at `now`, with %(name)s placeholders for the bound
        values (a dry run; a run's result carries the SQL it ran)."""
        return plan_query(
            metric,
            intent,
            now=datetime.fromtimestamp(now, tz=UTC),
            max_rows=self._max_rows,
            row_filter=row_filter,
        ).sql

    async def run_metric(
        self,
        metric: MetricDef,
        intent: DataIntent,
        *,
        now: float,
        row_filter: SeriesFilter | None = None,
    ) -> QueryResult:
        plan = plan_query(
            metric,
            intent,
            now=datetime.fromtimestamp(now, tz=UTC),
            max_rows=self._max_rows,
            row_filter=row_filter,
        )
        raw_rows, description = await within(
            self.deadline_s,
            self._query(plan),
            on_timeout=lambda: PostgresFailure(
                f"no answer from PostgreSQL within {self.deadline_s:g}s (client deadline; "
                "the statement is cancelled)",
                kind=FailureKind.postgres_timeout,
            ),
        )
        raw_rows, truncated = _truncate(raw_rows, plan)
        columns = [Column(d.name, portable_type(_type_name(d.type_code))) for d in description]
        rows = [{k: json_safe(v) for k, v in r.items()} for r in raw_rows]
        return QueryResult(rows=rows, columns=columns, sql=plan.sql, truncated=truncated)

    async def _query(self, plan: PlannedQuery) -> tuple[list[dict[str, Any]], list[Any]]:
        try:
            async with self._pool.connection() as conn, conn.transaction():
                # One round trip; the timeout is an int from our own settings, not input.
                await conn.execute(
                    cast(
                        LiteralString,
                        "SET TRANSACTION READ ONLY;"
                        f" SET LOCAL statement_timeout = {self._statement_timeout_ms}",
                    )
                )
                async with conn.cursor(row_factory=dict_row) as cur:
                    await cur.execute(cast(LiteralString, plan.sql), plan.params)
                    return await cur.fetchall(), list(cur.description or [])
        except psycopg.Error as exc:  # includes PoolTimeout
            raise postgres_failure(
                exc,
                statement_timeout_ms=self._statement_timeout_ms,
                pool_timeout_s=self._pool_timeout_s,
            ) from exc

    async def ping(self) -> bool:
        async def probe() -> None:
            async with self._pool.connection(timeout=self._pool_timeout_s) as conn:
                await conn.execute("SELECT 1")

        try:
            await within(self.deadline_s, probe(), on_timeout=lambda: TimeoutError("ping"))
        except (psycopg.Error, TimeoutError):  # includes PoolTimeout / PoolClosed
            return False
        return True
