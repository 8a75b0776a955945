"""Rollup declarations -> validated `Rollup`s, and how a metric's measure maps onto a
rollup's columns. Boot refuses (a problem per bad entry) rather than serving a rollup that
could answer wrongly."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from sqlglot import exp
from sqlglot.errors import ParseError

from domain.models import MetricDef, RoutingEntry
from domain.rollups import Aggregate, Measure, Rollup, RollupDef
from metricsql import dialect
from metricsql.rollups.timegrid import nests

MetricKind = Literal["count", "sum", "min", "max", "avg", "count_distinct"]
# how a measure is read back: a metric kind, or `distinct_dimension`, count(DISTINCT x) of a
# rollup dimension x, counted over the rollup's rows themselves (exact at any grain and
# dimensions: the rows keep every distinct x of every bucket and dimension value)
ReadKind = Literal["count", "sum", "min", "max", "avg", "count_distinct", "distinct_dimension"]


class RollupProblem(ValueError):
    """A rollup declaration that cannot be used (the message says why)."""


def parse_aggregate(sql: str) -> exp.Expr:
    """One aggregate expression in the Databricks dialect (DATEDIFF's meaning kept)."""
    try:
        trees = dialect.parse(sql)
    except ParseError as e:
        raise RollupProblem(f"cannot parse {sql!r}: {e}") from e
    if len(trees) != 1 or isinstance(trees[0], exp.Query | exp.Command):
        raise RollupProblem(f"{sql!r} must be one expression")
    return dialect.keep_two_argument_datediff(trees[0])


def canonical(e: exp.Expr) -> str:
    return e.sql(dialect=dialect.DATABRICKS).lower()


@functools.lru_cache(maxsize=1024)
def aggregate_of(sql: str) -> tuple[MetricKind, str | None]:
    """(kind, canonical argument) of `count(*)`, `count(x)`, `count(DISTINCT x)`, `sum(x)`,
    `min(x)`, `max(x)` or `avg(x)`; RollupProblem for anything else (an expression over
    aggregates, a FILTER clause, a window...). Remembered per text: a rollup read asks for
    its metric's measure on every request (a parse is most of a match's time)."""
    tree = parse_aggregate(sql)
    if isinstance(tree, exp.Count):
        arg = tree.this
        if isinstance(arg, exp.Star):
            return "count", None
        if isinstance(arg, exp.Distinct):
            if len(arg.expressions) != 1:
                raise RollupProblem(f"{sql!r}: count(DISTINCT) of one expression only")
            return "count_distinct", canonical(arg.expressions[0])
        if arg is None or tree.args.get("expressions"):
            raise RollupProblem(f"{sql!r}: count of one expression only")
        return "count", canonical(arg)
    kinds: dict[type[exp.Expr], MetricKind] = {
        exp.Sum: "sum",
        exp.Min: "min",
        exp.Max: "max",
        exp.Avg: "avg",
    }
    kind = kinds.get(type(tree))
    if kind is None or not isinstance(tree.this, exp.Expr) or tree.args.get("expressions"):
        raise RollupProblem(f"{sql!r} is not count, sum, min, max or avg of one expression")
    if isinstance(tree.this, exp.Distinct):
        raise RollupProblem(f"{sql!r}: only count takes DISTINCT")
    return kind, canonical(tree.this)


def _columns(tree: exp.Expr) -> set[str]:
    return {c.name.lower() for c in tree.find_all(exp.Column)}


def compile_rollup(name: str, definition: RollupDef) -> Rollup:
    measures = []
    for mname, sql in definition.measures.items():
        kind, arg = aggregate_of(sql)
        if kind == "avg":
            raise RollupProblem(f"measure {mname!r}: avg is derived: declare sum and count")
        agg: Aggregate = kind
        measures.append(Measure(mname, agg, arg))
    seen = {(m.kind, m.arg) for m in measures}
    if len(seen) != len(measures):
        raise RollupProblem("two measures compute the same aggregate")
    if not nests(definition.grain, definition.partition_by):
        raise RollupProblem(
            f"grain {definition.grain!r} does not nest in partition_by "
            f"{definition.partition_by!r} (each bucket must lie in one partition)"
        )
    payload = {
        "table": definition.table,
        "time_column": definition.time_column,
        "grain": definition.grain,
        "partition_by": definition.partition_by,
        "dimensions": definition.dimensions,
        "measures": sorted([m.name, m.kind, m.arg] for m in measures),
    }
    blob = json.dumps(payload, sort_keys=True).encode()
    signature = hashlib.sha256(blob).hexdigest()[:16]
    return Rollup(name=name, definition=definition, measures=tuple(measures), signature=signature)


@dataclass(frozen=True, slots=True)
class MetricMeasure:
    """How a metric's measure is re-aggregated from rollup columns (`avg`: sum, count)."""

    kind: ReadKind
    columns: tuple[str, ...]


def metric_measure(rollup: Rollup, metric: MetricDef) -> MetricMeasure:
    """The rollup columns answering `metric`'s measure; RollupProblem when it has none."""
    kind, arg = aggregate_of(metric.definition.measure or "")

    def column(k: Aggregate) -> str:
        for m in rollup.measures:
            if m.kind == k and m.arg == arg:
                return m.name
        what = f"{k}({arg or '*'})" if k != "count_distinct" else f"count(DISTINCT {arg})"
        raise RollupProblem(
            f"rollup {rollup.name!r} has no measure {what} for metric {metric.name!r}"
        )

    if kind == "avg":
        return MetricMeasure("avg", (column("sum"), column("count")))
    if kind == "count_distinct" and arg in rollup.definition.dimensions:
        return MetricMeasure("distinct_dimension", (arg,))
    return MetricMeasure(kind, (column(kind),))


def validate_rollups(
    defs: Mapping[str, RollupDef],
    *,
    metrics: Mapping[str, MetricDef],
    routing: Mapping[str, RoutingEntry],
    table_columns: Mapping[str, Iterable[str] | None],
) -> tuple[dict[str, Rollup], list[str]]:
    """The usable rollups, and one problem per bad declaration: an unknown table (not a
    warehouse metric's), column (when the warehouse described the table), or metric; a
    metric over another table or time column, not compiled by the warehouse, whose measure
    the rollup cannot re-aggregate, or whose default filters use a column that is not a
    rollup dimension. The service refuses to start on any problem."""
    problems: list[str] = []
    out: dict[str, Rollup] = {}
    columns = {
        t.lower(): None if cols is None else {c.lower() for c in cols}
        for t, cols in table_columns.items()
    }
    for name, d in defs.items():
        where = f"rollup {name!r}"
        try:
            rollup = compile_rollup(name, d)
        except RollupProblem as exc:
            problems.append(f"{where}: {exc}")
            continue
        if d.table not in columns:
            problems.append(f"{where}: unknown warehouse table {d.table!r}")
            continue
        known = columns[d.table]
        used = {d.time_column, *d.dimensions}
        for m in d.measures.values():
            used |= _columns(parse_aggregate(m))
        if known is not None:
            problems += [
                f"{where}: table {d.table!r} has no column {c!r}" for c in sorted(used - known)
            ]
        bad = len(problems)
        for metric_name in d.metrics:
            metric = metrics.get(metric_name)
            entry = routing.get(metric_name)
            if metric is None:
                problems.append(f"{where}: unknown metric {metric_name!r}")
                continue
            md = metric.definition
            if md.table.lower() != d.table or md.time_column.lower() != d.time_column:
                problems.append(
                    f"{where}: metric {metric_name!r} reads {md.table}.{md.time_column}, "
                    f"not {d.table}.{d.time_column}"
                )
                continue
            if entry is None or entry.backend != "databricks" or entry.generator != "compiled":
                problems.append(
                    f"{where}: metric {metric_name!r} is not a compiled warehouse metric"
                )
                continue
            try:
                metric_measure(rollup, metric)
            except RollupProblem as exc:
                problems.append(f"{where}: {exc}")
            problems += [
                f"{where}: metric {metric_name!r} filters on {f.column!r}, not a rollup dimension"
                for f in md.default_filters
                if f.column.lower() not in d.dimensions
            ]
        if len(problems) == bad:
            out[name] = rollup
    return out, problems
