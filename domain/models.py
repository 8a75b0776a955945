"""The widget, metric and routing models shared by every layer.

A widget spec is validated against the metric catalog when registered (`validate_intent`):
an unknown metric, dimension or filter column is rejected there (422), and again at
resolution time (`invalid_intent`) in case a stale spec slips through.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Backend = Literal["postgres", "databricks"]  # the one spelling: routing, state, schemas
Grain = Literal["none", "minute", "hour", "day", "week", "month"]
ChartKind = Literal["kpi", "line", "bar", "area", "pie", "table"]
FilterOp = Literal["=", "!=", "in", "not_in", ">", ">=", "<", "<="]
Generator = Literal["compiled", "llm"]
Scalar = str | int | float | bool

IDENT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
IDENT_RE = re.compile(IDENT_PATTERN)
# The OpenAPI document states the rules the validators below enforce (checked messages
# stay the validators').
_IDENT_DOC: dict[str, Any] = {"pattern": IDENT_PATTERN}
RELATIVE_PATTERN = r"^(last_[0-9]{1,4}(m|h|d)|mtd|qtd|ytd|all|today)$"
WIDGET_ID_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
# Path segments the API itself uses after /v1/widgets/: never widget ids (a widget named
# `data` would shadow POST /v1/widgets/data). tests/integration/test_api_postgres.py checks
# that every such segment of the app's routes is listed.
RESERVED_WIDGET_IDS = frozenset({"data", "sql", "stream", "batch", "events"})


def widget_id_problem(widget_id: str) -> str | None:
    """Why `widget_id` cannot name a widget (None when it can)."""
    if not re.match(WIDGET_ID_RE, widget_id):
        return f"widget id {widget_id!r} must match {WIDGET_ID_RE}"
    if widget_id in RESERVED_WIDGET_IDS:
        return f"widget id {widget_id!r} is reserved for the API's own paths"
    return None


RELATIVE_RE = re.compile(r"last_([0-9]{1,4})(m|h|d)")  # used with fullmatch
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MIN_YEAR, MAX_YEAR = 1900, 2200
MAX_JSON_DEPTH = 8


def check_json_value(value: Any, where: str, depth: int = 0) -> None:
    """Reject what cannot round-trip through PostgreSQL jsonb and JSON encoders: NUL
    characters and lone surrogates in strings, integers beyond 64 bits, NaN/Infinity,
    and deep nesting. Raises ValueError naming `where`."""
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"{where}: nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(f"{where}: integer {value} is outside the 64-bit range")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value} is not a finite number")
        if abs(value) >= 2.0**63:  # jsonb would hand it back as an integer beyond 64 bits
            raise ValueError(f"{where}: {value} is too large")
    elif isinstance(value, str):
        check_text(value, where)
    elif isinstance(value, dict):
        for k, v in value.items():
            check_text(str(k), where)
            check_json_value(v, f"{where}.{k}", depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_json_value(v, f"{where}[{i}]", depth + 1)


def check_text(text: str, where: str) -> None:
    if "\x00" in text:
        raise ValueError(f"{where}: NUL characters are not allowed")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{where}: invalid Unicode (lone surrogate)") from None


RELATIVE_NAMED = ("mtd", "qtd", "ytd", "all", "today")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Filter(_Strict):
    column: str = Field(json_schema_extra=_IDENT_DOC)
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
        check_json_value(self.value, "filter value")
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
        for name, ts in (("start", self.start), ("end", self.end)):
            try:
                year = ts.astimezone(UTC).year
            except OverflowError:
                raise ValueError(f"{name} is out of range") from None
            if not MIN_YEAR <= year <= MAX_YEAR:
                raise ValueError(f"{name} must be between the years {MIN_YEAR} and {MAX_YEAR}")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


TimeRange = (
    Annotated[
        str,
        Field(
            description="last_<N>m|h|d, mtd, qtd, ytd, today or all",
            json_schema_extra={"pattern": RELATIVE_PATTERN},
        ),
    ]
    | AbsoluteRange
)


class DataIntent(_Strict):
    metric_id: str = Field(json_schema_extra=_IDENT_DOC)
    dimensions: list[str] = Field(
        default_factory=list,
        max_length=3,
        json_schema_extra={"items": {"type": "string", **_IDENT_DOC}, "uniqueItems": True},
    )
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

    @field_validator("question")
    @classmethod
    def _question_text(cls, v: str | None) -> str | None:
        if v is not None:
            check_text(v, "question")
        return v

    @field_validator("time_range")
    @classmethod
    def _time_range(cls, v: str | AbsoluteRange) -> str | AbsoluteRange:
        if isinstance(v, str) and not (RELATIVE_RE.fullmatch(v) or v in RELATIVE_NAMED):
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

    @model_validator(mode="after")
    def _storable(self) -> WidgetSpec:
        check_text(self.title, "title")
        if self.description:
            check_text(self.description, "description")
        if self.data_intent.question:
            check_text(self.data_intent.question, "data_intent.question")
        check_json_value(self.mock_data, "mock_data")
        return self


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
    m = RELATIVE_RE.fullmatch(tr)
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
    # an ordinal dimension's natural order (severity: critical, high, medium, low): charts
    # keep it instead of sorting by value; values not listed come after, as they came
    dimension_order: dict[str, list[str]] = Field(default_factory=dict)
    filter_columns: list[str] = Field(default_factory=list)
    default_filters: list[Filter] = Field(default_factory=list)

    @model_validator(mode="after")
    def _orders_name_dimensions(self) -> MetricDefinition:
        for dim, values in self.dimension_order.items():
            if dim not in self.dimensions:
                raise ValueError(
                    f"dimension_order names {dim!r}, which is not one of the dimensions "
                    f"{self.dimensions}"
                )
            if len(set(values)) != len(values):
                raise ValueError(f"dimension_order of {dim!r} lists a value twice")
        return self

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
    backend: Backend  # a typo is refused at boot, naming the metric and the value
    ttl_seconds: int = Field(default=300, ge=0, le=86_400)
    generator: Generator = "compiled"
    # Freshness policy (domain/freshness.py). Past its TTL an answer is still served, flagged
    # stale, while one background refresh runs, for this long (None: the TTL again) ...
    stale_while_revalidate_seconds: int | None = Field(default=None, ge=0, le=86_400)
    # ... and a last good answer stands in for a failing backend this long past its TTL
    # (0: never, for metrics where old numbers mislead).
    stale_if_error_seconds: int = Field(default=3600, ge=0, le=7 * 86_400)

    @model_validator(mode="after")
    def _windows_need_a_ttl(self) -> RoutingEntry:
        if self.ttl_seconds == 0 and self.stale_while_revalidate_seconds:
            raise ValueError(
                "stale_while_revalidate_seconds needs ttl_seconds > 0 (nothing is served "
                "from the cache with a TTL of 0)"
            )
        return self

    @property
    def swr_seconds(self) -> int:
        swr = self.stale_while_revalidate_seconds
        return self.ttl_seconds if swr is None else swr


POSTGRES_FILTER_OPS = ("=", "!=", "in", "not_in")


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
    if d.aggregation is not None:  # kpi_metrics_history: dimensions are jsonb text values
        errors += [
            f"filter operator {f.op!r} is not supported on metric {metric.name!r} "
            f"(PostgreSQL metrics take {', '.join(POSTGRES_FILTER_OPS)})"
            for f in intent.filters
            if f.op not in POSTGRES_FILTER_OPS
        ]
    return errors


_NUMERIC_TYPES = ("TINYINT", "SMALLINT", "INT", "BIGINT", "LONG", "SHORT", "BYTE", "INTEGER")
_FRACTION_TYPES = ("DECIMAL", "NUMERIC", "DOUBLE", "FLOAT", "REAL")


def _fits(value: Scalar, column_type: str) -> bool:
    """Whether a filter value fits a warehouse column type (Databricks type names)."""
    t = column_type.strip().upper()
    if t.startswith(_NUMERIC_TYPES):
        return isinstance(value, int) and not isinstance(value, bool)
    if t.startswith(_FRACTION_TYPES):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if t.startswith("BOOLEAN"):
        return isinstance(value, bool)
    if t.startswith(("STRING", "VARCHAR", "CHAR")):
        return isinstance(value, str)
    if t == "DATE" or t.startswith("TIMESTAMP"):
        if not isinstance(value, str):
            return False
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return False
        return True
    return True  # a type we do not judge (arrays, maps, ...): the warehouse will


def filter_type_problems(
    intent: DataIntent, metric: MetricDef, column_types: dict[str, str]
) -> list[str]:
    """Filters whose value does not fit its column's type (`column_types`: the metric
    table's {column: Databricks type}, from the warehouse catalog). Empty when all fit or
    the types are unknown. `region IN (5)` or `channel <= 2.5` would otherwise error, or
    not, depending on the data and the engine."""
    problems = []
    for f in [*metric.definition.default_filters, *intent.filters]:
        column_type = column_types.get(f.column.lower())
        if column_type is None:
            continue
        values = f.value if isinstance(f.value, list) else [f.value]
        bad = [v for v in values if not _fits(v, column_type)]
        if bad:
            problems.append(
                f"filter {f.column} {f.op} {bad[0]!r}: the value does not fit column "
                f"{f.column!r} of type {column_type}"
            )
    return problems
