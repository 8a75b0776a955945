"""Whether a rollup can answer an intent exactly, and the read that does (pure).

A rollup answers when all of these hold, else the intent takes today's path:
- the metric is one the rollup declares, compiled (no free-text question);
- the intent's dimensions are rollup dimensions, its grain equal to or coarser than the
  rollup's (buckets nest: day -> week or month; week -> week only);
- every filter (the metric's defaults and the intent's) is on a rollup dimension, with a
  value that fits the column's type;
- every row filter of the identity on the table is on a rollup dimension (one rollup
  serves every identity: the filter is applied to its rows as to the warehouse's);
- the measure re-aggregates (count, sum, min, max; avg from sum and count); count-distinct
  of a rollup dimension always (counted over the rollup's rows, which keep every distinct
  value per bucket: exact at any grain, dimensions, filters and row filters), of a
  count-distinct measure column only when no two rollup rows merge into one answer row: the
  same grain, and every rollup dimension grouped by or fixed to one value (by a filter or
  a one-value row filter). Never approximated;
- the time range is whole rollup buckets: an absolute range aligned at both ends; a
  relative one ends now (the rollup's newest bucket, as of its build) and starts aligned,
  or is floored to the rollup's grain when the rollup says `relative_ranges: floor`.
Whether the range is *built* is the store's to check (`RollupQuery.start`/`end`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from domain.access import RowAccess
from domain.models import (
    AbsoluteRange,
    DataIntent,
    Filter,
    MetricDef,
    filter_type_problems,
    resolve_time_range,
)
from domain.rollups import Rollup, RollupQuery
from metricsql.rollups.compile import MetricMeasure, RollupProblem, metric_measure
from metricsql.rollups.sql import ReadTemplate, read_template
from metricsql.rollups.timegrid import aligned, nests, trunc


@dataclass(frozen=True, slots=True)
class NoMatch:
    """Why a rollup cannot answer (shown in the trace; the intent takes today's path)."""

    rollup: str
    reason: str


def match(
    rollup: Rollup,
    metric: MetricDef,
    intent: DataIntent,
    access: RowAccess,
    *,
    now: datetime,
    column_types: Mapping[str, str] | None = None,
    max_rows: int = 10_000,
    default_limit: int = 1000,
) -> RollupQuery | NoMatch:
    d = rollup.definition

    def no(reason: str) -> NoMatch:
        return NoMatch(rollup.name, reason)

    if metric.name not in d.metrics:
        return no(f"metric {metric.name!r} is not one of the rollup's")
    md = metric.definition
    if md.table.lower() != d.table or md.time_column.lower() != d.time_column:
        return no(f"metric {metric.name!r} no longer reads {d.table}.{d.time_column}")
    if intent.question:
        return no("a free-text question is answered by LLM-written SQL")
    dims = set(d.dimensions)
    missing = [x for x in intent.dimensions if x.lower() not in dims]
    if missing:
        return no(f"dimension {missing[0]!r} is not a rollup dimension")
    if intent.grain != "none" and not nests(d.grain, intent.grain):
        return no(f"grain {intent.grain!r} is finer than or straddles the rollup's {d.grain!r}")
    filters = [*metric.definition.default_filters, *intent.filters]
    off = [f.column for f in filters if f.column.lower() not in dims]
    if off:
        return no(f"filter column {off[0]!r} is not a rollup dimension")
    if filter_type_problems(intent, metric, dict(column_types or {})):
        return no("a filter value does not fit its column's type")
    row_filters = access.table_filters([d.table])
    lacking = [f.column for f in row_filters if f.column.lower() not in dims]
    if lacking:
        return no(f"the identity's row filter column {lacking[0]!r} is not a rollup dimension")
    try:
        measure = metric_measure(rollup, metric)
    except RollupProblem as exc:
        return no(str(exc))
    if measure.kind == "count_distinct":
        fixed = {
            f.column.lower()
            for f in filters
            if f.op == "=" or (f.op == "in" and isinstance(f.value, list) and len(f.value) == 1)
        }
        fixed |= {f.column.lower() for f in row_filters if len(f.values) <= 1}
        merged = dims - {x.lower() for x in intent.dimensions} - fixed
        if intent.grain != d.grain or merged:
            return no("count-distinct is exact only at the rollup's grain and dimensions")
    start, end = resolve_time_range(intent.time_range, now)
    widened_from = None
    if isinstance(intent.time_range, AbsoluteRange):
        if not (aligned(start, d.grain) and aligned(end, d.grain)):  # type: ignore[arg-type]
            return no(f"the range is not whole {d.grain}s")
    elif start is not None and not aligned(start, d.grain):
        if d.relative_ranges != "floor":
            return no(f"the range does not start on a {d.grain} (relative_ranges: strict)")
        widened_from, start = start, trunc(start, d.grain)
    template = _template(
        rollup,
        measure,
        dimensions=intent.dimensions,
        grain=intent.grain,
        has_start=start is not None,
        filters=filters,
        row_filters=[(f.column, f.values) for f in row_filters],
        limit=min(intent.limit or default_limit, max_rows),
    )
    return RollupQuery(
        rollup=rollup.name,
        sql=template.display(start, end),
        start=start,
        end=end,
        template=template.text,
        widened_from=widened_from,
    )


_TEMPLATES: dict[tuple[object, ...], ReadTemplate] = {}
_TEMPLATES_MAX = 4096  # read shapes kept (a shape: rollup, measure, dimensions, filters...)


def _template(
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
    """The read's template, written by sqlglot once per shape (everything but the time
    bounds, which are its parameters)."""
    key = (
        rollup.name,
        rollup.signature,
        measure,
        tuple(dimensions),
        grain,
        has_start,
        tuple(f.model_dump_json() for f in filters),
        tuple(row_filters),
        limit,
    )
    found = _TEMPLATES.get(key)
    if found is None:
        found = read_template(
            rollup,
            measure,
            dimensions=dimensions,
            grain=grain,
            has_start=has_start,
            filters=filters,
            row_filters=row_filters,
            limit=limit,
        )
        if len(_TEMPLATES) >= _TEMPLATES_MAX:
            _TEMPLATES.clear()
        _TEMPLATES[key] = found
    return found
