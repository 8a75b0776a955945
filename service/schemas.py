"""HTTP request and response bodies (the OpenAPI contract)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from domain.models import IDENT_PATTERN, WIDGET_ID_RE, Backend, DataIntent, WidgetSpec
from domain.ports import Trust


class ResolveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh: StrictBool = Field(
        default=False, description="Skip the cache read; resolve live and rewrite the cache."
    )
    dry_run: StrictBool = Field(
        default=False, description="Return the SQL that would run, without running it."
    )


class SchemaColumn(BaseModel):
    name: str
    type: str


class TraceEntry(BaseModel):
    node: str
    ms: float
    outcome: str


class RollupInfo(BaseModel):
    name: str = Field(description="The rollup (config/rollups.yaml) the answer was read from.")
    built_at: str = Field(description="When the rollup's data shown was built (ISO 8601).")
    data_age_s: float = Field(description="Seconds since then: the age of the data shown.")
    range_widened_to: str | None = Field(
        default=None,
        description="Set when the rollup answered a relative range (e.g. last_30d) from the "
        "start of its first bucket (`relative_ranges: floor`): the instant (ISO 8601) the "
        "rows start from, earlier than the range asked for, so they cover up to one bucket "
        "more than the warehouse's answer would. Null when the range is exact.",
    )


class Approximation(BaseModel):
    functions: list[str] = Field(description="The approximate functions the SQL calls.")
    columns: list[str] = Field(
        description="The output columns computed from one (empty when only the rows' "
        "selection is approximate, e.g. in HAVING)."
    )


class Verification(BaseModel):
    verified_by: str = Field(description="The subject who verified the answer.")
    verified_at: str = Field(description="When it was verified (ISO 8601).")


class ResolveResponse(BaseModel):
    widget_id: str
    metric_id: str
    backend: Backend | None
    source: str = Field(
        description="The backend on success (`rollup` when read from a rollup); the failure "
        "kind when degraded."
    )
    data: list[dict[str, Any]]
    schema_: list[SchemaColumn] = Field(alias="schema")
    row_count: int
    cache_hit: bool
    freshness_seconds: float = Field(
        description="The true age of the data shown, in seconds (0 for mock data)."
    )
    stale: bool = Field(
        description="The data is past its TTL: served while a background refresh runs "
        "(stale-while-revalidate), or a last good answer standing in for a failing backend. "
        "Stale data never looks current."
    )
    stale_reason: str | None = Field(
        description="Why stale data is shown: `revalidating` (a refresh is running), or the "
        "failure kind of the backend the last good answer stands in for; null when not stale."
    )
    live_data_unavailable: bool
    executed: bool
    dry_run: bool
    generated_sql: str | None
    error_detail: str | None
    resolved_at: str
    rollup: RollupInfo | None = Field(
        default=None, description="Present when the answer was read from a rollup."
    )
    approximate: bool = Field(
        default=False,
        description="The SQL that answered calls an approximate aggregate "
        "(`approx_count_distinct`, `percentile_approx`/`approx_percentile`, a sketch): its "
        "values are estimates within the function's documented error, on Databricks and on "
        "the embedded engine alike.",
    )
    approximation: Approximation | None = Field(
        default=None, description="When `approximate`: which functions, feeding which columns."
    )
    refresh_debounced: bool = Field(
        description="`refresh: true` came within REFRESH_MIN_INTERVAL_S of this widget's last "
        "live answer: that answer is returned (`cache_hit` true, its age in "
        "`freshness_seconds`) instead of querying the backend again."
    )
    refresh_retry_after_s: float | None = Field(
        description="When `refresh_debounced`: seconds until a forced refresh queries the "
        "backend again; null otherwise."
    )
    trust: Trust | None = Field(
        default=None,
        description="For a widget with a free-text question: `compiled_from_metric` (the "
        "model expressed it as an intent over a catalog metric; the metric compiler wrote "
        "the SQL) or `model_written_unverified` (the model wrote the SQL; the safety layer "
        "checked it, nobody verified it), or `verified` (an owner verified this answer to "
        "the question as written: `PUT /v1/widgets/{widget_id}/verified-answer`). Null for "
        "other widgets and for mock data.",
    )
    verification: Verification | None = Field(
        default=None, description="When `trust` is `verified`: who verified it, and when."
    )
    trace: list[TraceEntry] | None = Field(default=None, description="Present when ?trace=true.")


class BatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    widget_ids: list[Annotated[str, Field(pattern=WIDGET_ID_RE)]] = Field(
        json_schema_extra={"uniqueItems": True}, min_length=1, max_length=50
    )
    refresh: StrictBool = False
    dry_run: StrictBool = False

    @field_validator("widget_ids")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("widget_ids must be distinct")
        return v


class BatchResponse(BaseModel):
    results: list[ResolveResponse] = Field(
        description="One answer per registered widget, in request order."
    )
    not_found: list[str] = Field(description="Requested ids that are not registered.")


class MetricOut(BaseModel):
    name: str
    description: str
    unit: str
    owner: str
    backend: str | None = Field(description="From config/metric_routing.yaml (authoritative).")
    generator: str | None
    ttl_seconds: int | None
    dimensions: list[str]
    dimension_order: dict[str, list[str]] = Field(
        description="An ordinal dimension's natural order (e.g. severity): charts keep it."
    )
    filter_columns: list[str]
    governance_status: str
    last_validated_at: str | None


class MetricList(BaseModel):
    metrics: list[MetricOut]


class WidgetOut(BaseModel):
    id: str
    spec: WidgetSpec


class WidgetList(BaseModel):
    widgets: list[WidgetOut]


class GenerateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric_id: str = Field(json_schema_extra={"pattern": IDENT_PATTERN})
    question: str | None = Field(default=None, min_length=1, max_length=2000)
    data_intent: DataIntent | None = None


class SafetyVerdict(BaseModel):
    allowed: bool
    rule: str | None


class GenerateResponse(BaseModel):
    sql: str
    dialect: str
    generator: Literal["compiled", "llm"]
    model_id: str | None
    safety: SafetyVerdict


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    """`status` for everyone; `components` (each dependency's state, the auth mode, the
    registry's version and widget count...) only for a caller holding `ops:read`."""

    status: Literal["ok", "degraded"]
    components: dict[str, dict[str, Any]] | None = None


class AuditEntryOut(BaseModel):
    """One widget write (or verified answer write, `answer.*`): who, what, and hashes
    (SHA-256 of the canonical spec JSON, or of the verified answer) before and after (null:
    none / deleted)."""

    id: int
    at: str
    tenant: str
    subject: str
    action: Literal[
        "widget.create", "widget.replace", "widget.delete", "answer.verify", "answer.unverify"
    ]
    widget_id: str
    before_hash: str | None
    after_hash: str | None


class AuditList(BaseModel):
    entries: list[AuditEntryOut]
    next_before_id: int | None = Field(
        default=None, description="Pass as before_id for the next (older) page."
    )


class VerifyBody(BaseModel):
    """The answer an owner verifies for a widget's question: exactly one of a data intent
    over a catalog metric (compiled at each run, as a grounded answer) or SQL (checked by
    the safety layer; each caller's row filters are applied at each run)."""

    model_config = ConfigDict(extra="forbid")

    intent: DataIntent | None = Field(
        default=None, description="A data intent over a compiled warehouse catalog metric."
    )
    sql: str | None = Field(default=None, min_length=1, max_length=20_000)

    @model_validator(mode="after")
    def _one(self) -> VerifyBody:
        if (self.intent is None) == (self.sql is None):
            raise ValueError("give exactly one of `intent` or `sql`")
        return self


class VerifiedAnswerOut(BaseModel):
    widget_id: str = Field(description="The widget the answer was verified through.")
    question: str = Field(description="The question as written: the answer's key.")
    intent: dict[str, Any] | None
    sql: str | None
    verified_by: str
    verified_at: str = Field(description="ISO 8601.")
    needs_reverification: bool = Field(
        description="A catalog change broke the answer (its metric, dimensions or tables): "
        "it is not served (the question takes the usual way) until verified again."
    )
    reverification_reason: str | None
