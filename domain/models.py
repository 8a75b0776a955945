"""The widget, metric and routing models shared by every layer.

A widget spec is validated against the metric catalog when registered (`validate_intent`):
an unknown metric, dimension or filter column is rejected there (422), and again at
resolution time (`invalid_intent`) in case a stale spec slips through.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Backend = Literal["postgres", "databricks"]
BACKENDS: tuple[str, ...] = ("postgres", "databricks")
Grain = Literal["none", "minute", "hour", "day", "week", "month"]
ChartKind = Literal["kpi", "line", "bar", "area", "pie", "table"]
FilterOp = Literal["=", "!=", "in", "not_in", ">", ">=", "<", "<="]
Generator = Literal["compiled", "llm"]
Scalar = str | int | float | bool

IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
WIDGET_ID_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
RELATIVE_RE = re.compile(r"^last_(\d{1,4})(m|h|d)$")
RELATIVE_NAMED = ("mtd", "qtd", "ytd", "all", "today")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Filter(_Strict):
    column: str
    op: FilterOp = "="
    value: Scalar | list[Scalar]

    @field_validator("column")
    @classmethod
    def _ident(cls, v: str) -> str:
        if not IDENT_RE.match(v):
            raise ValueError("filter column must be a plain identifier")
        return v

    @model_validator(mode="after")
    def _value_shape(self) -> Filter:
        is_list = isinstance(self.value, list)
        if self.op in ("in", "not_in"):
            if not is_list or not self.value:
                raise ValueError(f"op {self.op!r} takes a non-empty list value")
            if len(self.value) > 100:  # type: ignore[arg-type]
                raise ValueError("at most 100 values in a list filter")
        elif is_list:
            raise ValueError(f"op {self.op!r} takes a single value")
        return self


class AbsoluteRange(_Strict):
    start: datetime
    end: datetime

    @model_validator(mode="after")
    def _ordered(self) -> AbsoluteRange:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end need a timezone offset")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


TimeRange = (
    Annotated[str, Field(description="last_<N>m|h|d, mtd, qtd, ytd, today or all")] | AbsoluteRange
)


class DataIntent(_Strict):
    metric_id: str
    dimensions: list[str] = Field(default_factory=list, max_length=3)
    time_range: TimeRange = "last_30d"
    grain: Grain = "none"
    filters: list[Filter] = Field(default_factory=list, max_length=20)
    limit: int | None = Field(default=None, ge=1, le=10_000)
    question: str | None = Field(default=None, min_length=1, max_length=2000)

    @field_validator("metric_id")
    @classmethod
    def _metric_ident(cls, v: str) -> str:
        if not IDENT_RE.match(v):
            raise ValueError("metric_id must be a plain identifier")
        return v

    @field_validator("dimensions")
    @classmethod
    def _dims(cls, v: list[str]) -> list[str]:
        for d in v:
            if not IDENT_RE.match(d):
                raise ValueError(f"dimension {d!r} must be a plain identifier")
        if len(set(v)) != len(v):
            raise ValueError("dimensions must be distinct")
        return v

    @field_validator("time_range")
    @classmethod
    def _time_range(cls, v: str | AbsoluteRange) -> str | AbsoluteRange:
        if isinstance(v, str) and not (RELATIVE_RE.match(v) or v in RELATIVE_NAMED):
            raise ValueError(
                "time_range must be last_<N>m|h|d, mtd, qtd, ytd, today, all or {start, end}"
            )
        return v


class WidgetSpec(_Strict):
    title: str = Field(min_length=1, max_length=200)
    kind: ChartKind
    description: str | None = Field(default=None, max_length=2000)
    data_intent: DataIntent
    mock_data: list[dict[str, Any]] = Field(min_length=1, max_length=1000)


def resolve_time_range(tr: str | AbsoluteRange, now: datetime) -> tuple[datetime | None, datetime]:
    """Turn a time range into [start, end) in UTC. `start` is None for `all`."""
    now = now.astimezone(UTC)
    if isinstance(tr, AbsoluteRange):
        return tr.start.astimezone(UTC), tr.end.astimezone(UTC)
    if tr == "all":
        return None, now
    if tr == "today":
        return now.replace(hour=0, minute=0, second=0, microsecond=0), now
    if tr == "mtd":
        return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0), now
    if tr == "qtd":
        q_month = 3 * ((now.month - 1) // 3) + 1
        return now.replace(month=q_month, day=1, hour=0, minute=0, second=0, microsecond=0), now
    if tr == "ytd":
        return now.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0), now
    m = RELATIVE_RE.match(tr)
    if not m:
        raise ValueError(f"bad time_range {tr!r}")
    n, unit = int(m.group(1)), m.group(2)
    delta = {"m": timedelta(minutes=n), "h": timedelta(hours=n), "d": timedelta(days=n)}[unit]
    return now - delta, now


# ---------------------------------------------------------------- catalog and routing


class MetricDefinition(_Strict):
    """How a metric is computed.

    Postgres metrics read `kpi_metrics_history`: `aggregation` says how values combine,
    dimensions are keys of its `dimensions` jsonb. Warehouse metrics name a three-part
    `table`, a `measure` expression in the Databricks dialect and a `time_column`.
    """

    table: str
    measure: str | None = None  # warehouse: SQL expression, e.g. "count(*)"
    aggregation: Literal["sum", "avg", "max", "min", "last"] | None = None  # postgres
    time_column: str = "recorded_at"
    dimensions: list[str] = Field(default_factory=list)
    filter_columns: list[str] = Field(default_factory=list)
    default_filters: list[Filter] = Field(default_factory=list)

    @property
    def allowed_filter_columns(self) -> set[str]:
        return set(self.dimensions) | set(self.filter_columns)


class MetricDef(_Strict):
    name: str
    description: str
    unit: str
    owner: str
    definition: MetricDefinition
    governance_status: Literal["draft", "validated", "deprecated"] = "validated"
    last_validated_at: datetime | None = None


class RoutingEntry(_Strict):
    backend: str  # validated against BACKENDS at boot so a typo names itself
    ttl_seconds: int = Field(default=300, ge=0, le=86_400)
    generator: Generator = "compiled"


def validate_intent(intent: DataIntent, metrics: dict[str, MetricDef]) -> list[str]:
    """Problems with an intent against the catalog; empty when it is valid."""
    metric = metrics.get(intent.metric_id)
    if metric is None:
        return [f"unknown metric {intent.metric_id!r}"]
    d = metric.definition
    errors = [
        f"dimension {dim!r} is not allowed for metric {metric.name!r} (allowed: {sorted(d.dimensions)})"
        for dim in intent.dimensions
        if dim not in d.dimensions
    ]
    allowed = d.allowed_filter_columns
    errors += [
        f"filter column {f.column!r} is not allowed for metric {metric.name!r} (allowed: {sorted(allowed)})"
        for f in intent.filters
        if f.column not in allowed
    ]
    return errors
