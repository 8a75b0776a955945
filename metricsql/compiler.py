"""Compile a warehouse metric + a widget's DataIntent into one Databricks SELECT.

Pure: the SQL is built with sqlglot's expression builder, user values only ever become
sqlglot literals (escaped by the generator), and the same inputs always give the same
text. The output shape is fixed:

    SELECT <dimensions...>, DATE_TRUNC('<GRAIN>', <time_col>) AS bucket, <measure> AS value
    FROM <table>
    WHERE <time_col> >= CAST('<start>' AS TIMESTAMP) AND <time_col> < CAST('<end>' AS TIMESTAMP)
      AND <default filters> AND <intent filters>
    GROUP BY <dimensions...>, DATE_TRUNC(...)
    ORDER BY value DESC, <dimensions...>
    LIMIT <n>

(no bucket without a grain; no ORDER BY without a grain or dimensions). A time series
(grain set) that hits the limit keeps its newest buckets, still returned oldest first:

    SELECT <dimensions...>, bucket, value
    FROM (<the query above> ORDER BY bucket DESC, <dimensions...> DESC LIMIT <n>) AS series
    ORDER BY bucket ASC, <dimensions...> ASC
    LIMIT <n>

Timestamps are UTC wall-clock literals: the warehouse session time zone must be UTC
(the Databricks adapter and the DuckDB warehouse both set it).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from sqlglot import exp
from sqlglot.errors import ParseError

from domain.failures import InvalidIntent
from domain.models import DataIntent, Filter, MetricDef, Scalar, resolve_time_range, validate_intent
from metricsql import dialect

DIALECT = "databricks"
SERIES_ALIAS = "series"  # the derived table of a time series' newest buckets
GRAIN_UNITS: dict[str, str] = {
    "minute": "MINUTE",
    "hour": "HOUR",
    "day": "DAY",
    "week": "WEEK",
    "month": "MONTH",
}


def compile_intent(
    metric: MetricDef,
    intent: DataIntent,
    *,
    now: datetime,
    max_rows: int = 10_000,
    default_limit: int = 1000,
) -> str:
    """The Databricks SQL answering `intent` for a warehouse `metric`.

    Raises InvalidIntent for a metric without a warehouse measure, an intent for another
    metric, a dimension or filter column the metric does not allow, or a non-finite number.
    """
    d = metric.definition
    if not d.measure:
        raise InvalidIntent(f"metric {metric.name!r} has no warehouse measure (backend postgres?)")
    if intent.metric_id != metric.name:
        raise InvalidIntent(f"intent is for metric {intent.metric_id!r}, not {metric.name!r}")
    problems = validate_intent(intent, {metric.name: metric})
    if problems:
        raise InvalidIntent("; ".join(problems))

    time_col = exp.column(d.time_column)
    dims: list[exp.Expr] = [exp.column(name) for name in intent.dimensions]
    bucket = _bucket(time_col, intent.grain)

    projections: list[exp.Expr] = [dim.copy() for dim in dims]
    if bucket is not None:
        projections.append(exp.alias_(bucket.copy(), "bucket"))
    projections.append(exp.alias_(_measure(metric), "value"))

    conditions = _time_conditions(time_col, intent, now)
    conditions += [_filter_condition(f) for f in d.default_filters]
    conditions += [_filter_condition(f) for f in intent.filters]

    query = exp.select(*projections).from_(exp.to_table(d.table, dialect=DIALECT))
    if conditions:
        query = query.where(*conditions)
    group_by = [dim.copy() for dim in dims] + ([bucket.copy()] if bucket is not None else [])
    if group_by:
        query = query.group_by(*group_by)
    limit = min(intent.limit or default_limit, max_rows)
    if bucket is not None:
        return _newest_buckets(query, intent.dimensions, limit).sql(dialect=DIALECT)
    order_by = _order_by(dims, has_bucket=False)
    if order_by:
        query = query.order_by(*order_by)
    return query.limit(limit).sql(dialect=DIALECT)


def _newest_buckets(grouped: exp.Select, dimensions: list[str], limit: int) -> exp.Select:
    """A time series capped at `limit` rows keeps its NEWEST rows, in ascending order.

    The inner query takes the first `limit` rows in exactly the reverse of the output order
    (bucket DESC, dimensions DESC), i.e. the tail of the full ascending series; the outer
    query puts them back in ascending order (bucket, then the dimensions).
    """
    dims: list[exp.Expr] = [exp.column(name) for name in dimensions]
    newest = [_ordered(e, desc=True) for e in (exp.column("bucket"), *dims)]
    inner = grouped.order_by(*newest).limit(limit)
    columns = [*(dim.copy() for dim in dims), exp.column("bucket"), exp.column("value")]
    return (
        exp.select(*columns)
        .from_(inner.subquery(SERIES_ALIAS))
        .order_by(*_order_by(dims, has_bucket=True))
        .limit(limit)
    )


def _measure(metric: MetricDef) -> exp.Expr:
    """The measure's expression, printable back without changing its meaning."""
    measure = metric.definition.measure or ""
    try:
        trees = dialect.parse(measure)
    except ParseError as e:
        raise InvalidIntent(f"metric {metric.name!r} has an unparseable measure: {e}") from e
    if len(trees) != 1 or isinstance(trees[0], exp.Query | exp.Command):
        raise InvalidIntent(f"metric {metric.name!r} measure must be one expression")
    return dialect.keep_two_argument_datediff(trees[0])


def _bucket(time_col: exp.Expr, grain: str) -> exp.Expr | None:
    """DATE_TRUNC('<UNIT>', time_col), or None for grain 'none'."""
    unit = GRAIN_UNITS.get(grain)
    if unit is None:
        return None
    return exp.TimestampTrunc(this=time_col.copy(), unit=exp.var(unit))


def _timestamp_literal(ts: datetime) -> exp.Expr:
    """CAST('YYYY-MM-DD HH:MM:SS[.ffffff]' AS TIMESTAMP), in UTC."""
    ts = ts.astimezone(UTC)
    text = ts.strftime("%Y-%m-%d %H:%M:%S") + (f".{ts.microsecond:06d}" if ts.microsecond else "")
    return exp.cast(exp.Literal.string(text), exp.DataType.build("TIMESTAMP", dialect=DIALECT))


def _time_conditions(time_col: exp.Expr, intent: DataIntent, now: datetime) -> list[exp.Expr]:
    start, end = resolve_time_range(intent.time_range, now)
    conditions: list[exp.Expr] = []
    if start is not None:
        conditions.append(exp.GTE(this=time_col.copy(), expression=_timestamp_literal(start)))
    conditions.append(exp.LT(this=time_col.copy(), expression=_timestamp_literal(end)))
    return conditions


def _literal(value: Scalar) -> exp.Expr:
    """A user value as a sqlglot literal (never formatted into SQL text)."""
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidIntent(f"filter value {value!r} is not a finite number")
    if isinstance(value, str):
        return exp.Literal.string(value)
    return exp.Literal.number(value)


def _filter_condition(f: Filter) -> exp.Expr:
    col = exp.column(f.column)
    if f.op in ("in", "not_in"):
        values = f.value if isinstance(f.value, list) else [f.value]
        membership = exp.In(this=col, expressions=[_literal(v) for v in values])
        return exp.Not(this=membership) if f.op == "not_in" else membership
    if isinstance(f.value, list):  # excluded by Filter's validator; keeps the types honest
        raise InvalidIntent(f"op {f.op!r} takes a single value")
    value = _literal(f.value)
    builders: dict[str, type[exp.Binary]] = {
        "=": exp.EQ,
        "!=": exp.NEQ,
        ">": exp.GT,
        ">=": exp.GTE,
        "<": exp.LT,
        "<=": exp.LTE,
    }
    return builders[f.op](this=col, expression=value)


def _order_by(dims: list[exp.Expr], *, has_bucket: bool) -> list[exp.Ordered]:
    """bucket ASC (time series) or value DESC (dimensional), then the dimensions.

    NULL placement is Databricks' default (first for ASC, last for DESC), stated so that
    sqlglot prints no NULLS clause here and keeps the placement when transpiling.
    """
    if has_bucket:
        first = [_ordered(exp.column("bucket"), desc=False)]
    elif dims:
        first = [_ordered(exp.column("value"), desc=True)]
    else:
        return []
    return first + [_ordered(dim.copy(), desc=False) for dim in dims]


def _ordered(e: exp.Expr, *, desc: bool) -> exp.Ordered:
    return exp.Ordered(this=e, desc=desc, nulls_first=not desc)
