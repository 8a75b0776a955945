"""Rollups: what `config/rollups.yaml` declares, and the plain data a rollup answer carries.

A rollup pre-aggregates one warehouse table at a time grain over some dimensions, one
partition (a day, a week or a month of its time column) per warehouse statement, and lives
in PostgreSQL (adapters/rollups.py). `metricsql.rollups` decides, purely, whether a rollup
can answer an intent exactly and writes the SQL that builds and reads it.

    version: 1
    rollups:
      claim_events_daily:
        table: main.claims.claim_events
        time_column: event_ts
        grain: day                # the rollup's buckets
        partition_by: month       # one warehouse statement, one PostgreSQL transaction each
        update_window: 2          # the newest N partitions are the ones data changes touch
        max_age_seconds: 600      # ... rebuilt when older than this (no data version known)
        relative_ranges: floor    # strict (default) | floor: last_30d starts at its day
        dimensions: [region, channel, event_type]
        measures: {events: count(*), amount_sum: sum(amount), amount_n: count(amount)}
        metrics: [claims_paid_amount, avg_claim_amount]

Pure: no framework beyond pydantic (as domain.models).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from domain.models import IDENT_RE
from domain.results import Column

RollupGrain = Literal["minute", "hour", "day", "week", "month"]
PartitionBy = Literal["day", "week", "month"]
Aggregate = Literal["count", "sum", "min", "max", "count_distinct"]
NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,47}$")  # rollup_<name> stays a PostgreSQL identifier
TABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){2}$")


class RollupDef(BaseModel):
    """One rollup as declared (shape only; `metricsql.rollups.validate_rollups` checks it
    against the catalog and the warehouse's columns at boot)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str
    time_column: str
    grain: RollupGrain = "day"
    partition_by: PartitionBy = "month"
    update_window: int = Field(default=1, ge=1, le=366)
    max_age_seconds: int = Field(default=600, ge=1, le=7 * 86_400)
    relative_ranges: Literal["strict", "floor"] = "strict"
    dimensions: list[str] = Field(default_factory=list, max_length=16)
    measures: dict[str, str] = Field(min_length=1, max_length=32)
    metrics: list[str] = Field(min_length=1)

    @field_validator("table")
    @classmethod
    def _table(cls, v: str) -> str:
        if not TABLE_RE.match(v):
            raise ValueError("table must be a three-part catalog.schema.table")
        return v.lower()

    @field_validator("time_column")
    @classmethod
    def _time_column(cls, v: str) -> str:
        if not IDENT_RE.match(v):
            raise ValueError("time_column must be a plain identifier")
        return v.lower()

    @field_validator("dimensions")
    @classmethod
    def _dimensions(cls, v: list[str]) -> list[str]:
        for d in v:
            if not IDENT_RE.match(d):
                raise ValueError(f"dimension {d!r} must be a plain identifier")
        if len({d.lower() for d in v}) != len(v):
            raise ValueError("dimensions must be distinct")
        return [d.lower() for d in v]

    @field_validator("measures")
    @classmethod
    def _measures(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not NAME_RE.match(name) or name in ("bucket", "partition_start"):
                raise ValueError(f"measure name {name!r} must be a lower-case identifier")
        return v


@dataclass(frozen=True, slots=True)
class Measure:
    """A rollup column: `kind` over `arg` (canonical Databricks SQL; None for count(*))."""

    name: str
    kind: Aggregate
    arg: str | None


@dataclass(frozen=True, slots=True)
class Rollup:
    """A validated rollup, its measures parsed (metricsql.rollups.compile_rollup)."""

    name: str
    definition: RollupDef
    measures: tuple[Measure, ...]
    signature: str  # changes whenever what the rollup's rows mean changes

    @property
    def table_name(self) -> str:
        """The typed PostgreSQL table holding the rollup's rows."""
        return f"rollup_{self.name}"


@dataclass(frozen=True, slots=True)
class RollupQuery:
    """A matched read: the PostgreSQL SELECT over the rollup's table (literals inlined by
    sqlglot, never formatted), and the time range it needs built: [start, end); `start`
    None for `all` (from the table's first row)."""

    def params(self) -> dict[str, datetime]:
        """The template's parameters."""
        return {"end": self.end} | ({} if self.start is None else {"start": self.start})

    rollup: str
    sql: str
    start: datetime | None
    end: datetime
    approximate: bool = False
    # the range's own start when `relative_ranges: floor` moved it back to the first
    # bucket's start (`start`): the rows then cover up to one bucket more than the
    # warehouse's answer, and the response says so; None when the range is exact
    widened_from: datetime | None = None
    # the same read for the driver: `sql` with its time bounds as the named parameters
    # %(start)s and %(end)s (the same text for every request of its shape, so the server
    # prepares it once); empty: run `sql` as it is
    template: str = ""


@dataclass(frozen=True, slots=True)
class RollupAnswer:
    """What a rollup read returns: rows as a warehouse answer's, and how old its data is."""

    rows: list[dict[str, Any]]
    columns: list[Column]
    sql: str
    rollup: str
    built_at: float  # epoch seconds: the oldest build among the partitions it read that
    # data can still change in (the update window), else the oldest of all it read
    partitions: int
    truncated: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
