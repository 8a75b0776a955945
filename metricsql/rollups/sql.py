"""The SQL of rollups: the Databricks statement that builds one partition, and the
PostgreSQL SELECT that answers an intent from the rollup's table.

Build (one statement per partition, on the warehouse):

    SELECT <dimensions>, DATE_TRUNC('<GRAIN>', <time>) AS bucket, <aggregate> AS <measure>...
    FROM <table>
    WHERE <time> >= CAST('<partition start>' AS TIMESTAMP) AND <time> < CAST('<end>' ...)
    GROUP BY <dimensions>, DATE_TRUNC('<GRAIN>', <time>)

Read (PostgreSQL, over `rollup_<name>`): the compiler's output shape (dimensions, bucket,
value; the same order, NULL placement and limit, the same newest-buckets cap of a time
series) with the measure re-aggregated: sum of counts and sums, min of mins, max of maxes,
avg as sum / count, count(DISTINCT x) of a dimension x as itself over the rollup's rows.
User values only ever become sqlglot literals.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlglot import exp

from domain.models import Filter
from domain.rollups import Rollup
from metricsql.compiler import (
    DIALECT,
    GRAIN_UNITS,
    _filter_condition,
    _newest_buckets,
    _order_by,
    _timestamp_literal,
)
from metricsql.rollups.compile import MetricMeasure, parse_aggregate

PG = "postgres"
# stand-ins for the read's time bounds while sqlglot writes it (a per-process random token:
# no filter value can spell one), replaced by the bound parameters %(start)s and %(end)s
_TOKEN = uuid.uuid4().hex
_START = f"__rollup_start_{_TOKEN}__"
_END = f"__rollup_end_{_TOKEN}__"


def build_sql(rollup: Rollup, start: datetime, end: datetime) -> str:
    """The warehouse statement computing the rollup's rows of the partition [start, end)."""
    d = rollup.definition
    time_col = exp.column(d.time_column)
    bucket = exp.TimestampTrunc(this=time_col.copy(), unit=exp.var(GRAIN_UNITS[d.grain]))
    dims: list[exp.Expr] = [exp.column(name) for name in d.dimensions]
    projections: list[exp.Expr] = [dim.copy() for dim in dims]
    projections.append(exp.alias_(bucket.copy(), "bucket"))
    projections += [exp.alias_(parse_aggregate(sql), name) for name, sql in d.measures.items()]
    query = (
        exp.select(*projections)
        .from_(exp.to_table(d.table, dialect=DIALECT))
        .where(
            exp.GTE(this=time_col.copy(), expression=_timestamp_literal(start)),
            exp.LT(this=time_col.copy(), expression=_timestamp_literal(end)),
        )
        .group_by(*[dim.copy() for dim in dims], bucket.copy())
    )
    return query.sql(dialect=DIALECT)


def data_start_sql(rollup: Rollup) -> str:
    """The warehouse statement finding the table's first time value (where `all` starts)."""
    d = rollup.definition
    first = exp.alias_(exp.Min(this=exp.column(d.time_column)), "first_ts")
    return exp.select(first).from_(exp.to_table(d.table, dialect=DIALECT)).sql(dialect=DIALECT)


def _ts(ts: datetime | str) -> exp.Expr:
    text = ts if isinstance(ts, str) else ts.astimezone(UTC).isoformat()
    return exp.cast(exp.Literal.string(text), exp.DataType.build("TIMESTAMPTZ", dialect=PG))


def _cast_sql(ts: datetime | str) -> str:
    """`_ts(ts)` as PostgreSQL text, without sqlglot (a test checks they agree)."""
    text = ts if isinstance(ts, str) else ts.astimezone(UTC).isoformat()
    return f"CAST('{text}' AS TIMESTAMPTZ)"


@dataclass(frozen=True, slots=True)
class ReadTemplate:
    """A rollup read written once per shape (sqlglot is the slow part of a rollup answer)
    and bound per request: `text` for psycopg, its time bounds the named parameters
    `start` and `end` (a literal's `%` doubled), so the server can prepare it once;
    `shown` the same with stand-ins, for the SQL an answer shows (`display`)."""

    text: str
    shown: str

    def display(self, start: datetime | None, end: datetime) -> str:
        out = self.shown.replace(_cast_sql(_END), _cast_sql(end))
        return out if start is None else out.replace(_cast_sql(_START), _cast_sql(start))


def read_template(
    rollup: Rollup,
    measure: MetricMeasure,
    *,
    dimensions: list[str],
    grain: str,
    has_start: bool,
    filters: list[Filter],
    row_filters: list[tuple[str, tuple[str, ...]]],
    limit: int,
) -> ReadTemplate:
    """`read_sql` with its time bounds as parameters (see ReadTemplate)."""
    shown = read_sql(
        rollup,
        measure,
        dimensions=dimensions,
        grain=grain,
        start=_START if has_start else None,
        end=_END,
        filters=filters,
        row_filters=row_filters,
        limit=limit,
    )
    text = shown.replace("%", "%%")
    text = text.replace(_cast_sql(_START), "%(start)s").replace(_cast_sql(_END), "%(end)s")
    return ReadTemplate(text=text, shown=shown)


def _sum(col: str) -> exp.Expr:
    return exp.Sum(this=exp.column(col))


def _value(measure: MetricMeasure) -> exp.Expr:
    bigint = exp.DataType.build("BIGINT", dialect=PG)
    col = measure.columns[0]
    if measure.kind == "distinct_dimension":
        distinct = exp.Distinct(expressions=[exp.column(col)])
        return exp.cast(exp.Count(this=distinct), bigint)
    if measure.kind in ("count", "count_distinct"):
        return exp.cast(exp.Coalesce(this=_sum(col), expressions=[exp.Literal.number(0)]), bigint)
    if measure.kind == "sum":
        return _sum(col)
    if measure.kind == "min":
        return exp.Min(this=exp.column(col))
    if measure.kind == "max":
        return exp.Max(this=exp.column(col))
    total, count = measure.columns
    return exp.Div(
        this=exp.cast(_sum(total), exp.DataType.build("DOUBLE PRECISION", dialect=PG)),
        expression=exp.Nullif(this=_sum(count), expression=exp.Literal.number(0)),
    )


def read_sql(
    rollup: Rollup,
    measure: MetricMeasure,
    *,
    dimensions: list[str],
    grain: str,
    start: datetime | str | None,
    end: datetime | str,
    filters: list[Filter],
    row_filters: list[tuple[str, tuple[str, ...]]],
    limit: int,
) -> str:
    """The PostgreSQL SELECT answering an intent from the rollup's rows with buckets in
    [start, end) (`start` None: from the first), the filters, and each row filter as
    `column IN (values)` (no values: no rows)."""
    dims: list[exp.Expr] = [exp.column(name) for name in dimensions]
    bucket: exp.Expr | None = None
    if grain in GRAIN_UNITS:
        bucket = exp.column("bucket")
        if grain != rollup.definition.grain:
            bucket = exp.TimestampTrunc(this=bucket, unit=exp.var(GRAIN_UNITS[grain]))
    projections: list[exp.Expr] = [dim.copy() for dim in dims]
    if bucket is not None:
        projections.append(exp.alias_(bucket.copy(), "bucket"))
    projections.append(exp.alias_(_value(measure), "value"))
    conditions: list[exp.Expr] = []
    if start is not None:
        conditions.append(exp.GTE(this=exp.column("bucket"), expression=_ts(start)))
    conditions.append(exp.LT(this=exp.column("bucket"), expression=_ts(end)))
    conditions += [_filter_condition(f) for f in filters]
    for column, values in row_filters:
        if not values:
            conditions.append(exp.false())
        else:
            conditions.append(
                exp.In(this=exp.column(column), expressions=[exp.Literal.string(v) for v in values])
            )
    query = exp.select(*projections).from_(exp.to_table(rollup.table_name)).where(*conditions)
    group_by = [dim.copy() for dim in dims] + ([bucket.copy()] if bucket is not None else [])
    if group_by:
        query = query.group_by(*group_by)
    if bucket is not None:
        return _newest_buckets(query, dimensions, limit).sql(dialect=PG)
    order_by = _order_by(dims, has_bucket=False)
    if order_by:
        query = query.order_by(*order_by)
    return query.limit(limit).sql(dialect=PG)
