"""Row-level security policy: which rows of which table (and which Postgres metric series)
a principal may read.

`config/access_policy.yaml` maps warehouse tables to a column, and Postgres metrics'
`kpi_metrics_history` series to a dimension key, each compared with an attribute claim:

    tables:
      main.claims.claim_events: {column: region, claim: regions}
    series:
      claims_in_progress_count: {dimension: region, claim: regions}

`AccessPolicy.access_for(principal)` gives the `RowAccess` a request runs under: the tenant
and, per filtered table or series, the canonical claim values (sorted, deduplicated,
type-normalized strings). A principal without the claim gets an empty value set: it sees
no rows of that table (fail closed). Only the dev principal is unrestricted.

Pure: no framework. The service validates the policy against the catalog at boot
(`validate_policy`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from domain.identity import DEFAULT_TENANT, Principal

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){2}$")


class PolicyError(ValueError):
    """The access policy file is malformed or names something that does not exist."""


@dataclass(frozen=True, slots=True)
class TableRule:
    table: str  # three-part name, lower case
    column: str
    claim: str


@dataclass(frozen=True, slots=True)
class SeriesRule:
    metric: str
    dimension: str
    claim: str


@dataclass(frozen=True, slots=True)
class TableFilter:
    """Rows of `table` whose `column` is one of `values` (no values: no rows)."""

    table: str
    column: str
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SeriesFilter:
    """Points of `metric` whose `dimension` key is one of `values` (no values: none)."""

    metric: str
    dimension: str
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RowAccess:
    """What one request may read: its tenant and the row filters that apply to it."""

    tenant: str = DEFAULT_TENANT
    tables: tuple[TableFilter, ...] = ()
    series: tuple[SeriesFilter, ...] = ()

    def table_filters(self, tables: Iterable[str] | None = None) -> tuple[TableFilter, ...]:
        """The table filters (only those on `tables`, if given)."""
        if tables is None:
            return self.tables
        wanted = {t.lower() for t in tables}
        return tuple(f for f in self.tables if f.table in wanted)

    def series_filter(self, metric: str) -> SeriesFilter | None:
        return next((f for f in self.series if f.metric == metric), None)


UNRESTRICTED = RowAccess()


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    tables: tuple[TableRule, ...] = ()
    series: tuple[SeriesRule, ...] = ()

    @property
    def claims(self) -> frozenset[str]:
        return frozenset(r.claim for r in self.tables) | {r.claim for r in self.series}

    def access_for(self, principal: Principal) -> RowAccess:
        if principal.unrestricted:
            return RowAccess(tenant=principal.tenant)
        attrs = principal.attributes
        return RowAccess(
            tenant=principal.tenant,
            tables=tuple(
                TableFilter(r.table, r.column, tuple(attrs.get(r.claim, ()))) for r in self.tables
            ),
            series=tuple(
                SeriesFilter(r.metric, r.dimension, tuple(attrs.get(r.claim, ())))
                for r in self.series
            ),
        )


def _rule(where: str, raw: Any, keys: tuple[str, str]) -> tuple[str, str]:
    if not isinstance(raw, dict) or set(raw) != set(keys):
        raise PolicyError(f"{where}: expected exactly the keys {list(keys)}, got {raw!r}")
    out = []
    for k in keys:
        v = raw[k]
        if not isinstance(v, str) or not _IDENT.match(v):
            raise PolicyError(f"{where}: {k} {v!r} is not a plain identifier")
        out.append(v)
    return out[0], out[1]


def parse_policy(data: Any, *, source: str = "access policy") -> AccessPolicy:
    """The policy from its parsed YAML. PolicyError names the bad entry."""
    if data is None:
        return AccessPolicy()
    if not isinstance(data, dict) or set(data) - {"version", "tables", "series"}:
        raise PolicyError(f"{source}: expected a mapping with 'tables' and/or 'series'")
    tables, series = [], []
    raw_tables = data.get("tables") or {}
    raw_series = data.get("series") or {}
    if not isinstance(raw_tables, dict) or not isinstance(raw_series, dict):
        raise PolicyError(f"{source}: 'tables' and 'series' must be mappings")
    for name, raw in raw_tables.items():
        if not isinstance(name, str) or not _TABLE.match(name):
            raise PolicyError(f"{source}: table {name!r} must be a three-part catalog.schema.table")
        column, claim = _rule(f"{source}: table {name}", raw, ("column", "claim"))
        tables.append(TableRule(name.lower(), column.lower(), claim))
    for name, raw in raw_series.items():
        if not isinstance(name, str) or not _IDENT.match(name):
            raise PolicyError(f"{source}: series {name!r} must be a metric name")
        dimension, claim = _rule(f"{source}: series {name}", raw, ("dimension", "claim"))
        series.append(SeriesRule(name, dimension, claim))
    return AccessPolicy(tables=tuple(tables), series=tuple(series))


def load_policy(path: Path) -> AccessPolicy:
    """config/access_policy.yaml; a missing file is an empty policy (no row filters)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return AccessPolicy()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: invalid YAML: {exc}") from None
    return parse_policy(data, source=str(path))


def validate_policy(
    policy: AccessPolicy,
    *,
    table_columns: Mapping[str, Iterable[str] | None],
    series_dimensions: Mapping[str, Iterable[str]],
) -> list[str]:
    """Problems that must be fixed before serving: a table not on the warehouse allowlist,
    a column it lacks, a series rule on a metric that is not a Postgres metric, or a
    dimension that metric does not have."""
    problems = []
    columns = {
        t.lower(): None if cols is None else {c.lower() for c in cols}
        for t, cols in table_columns.items()
    }
    for rule in policy.tables:
        known = columns.get(rule.table, ())
        if rule.table not in columns:
            problems.append(f"access policy: unknown warehouse table {rule.table!r}")
        elif known is not None and rule.column not in known:
            problems.append(f"access policy: table {rule.table!r} has no column {rule.column!r}")
    for srule in policy.series:
        dims = series_dimensions.get(srule.metric)
        if dims is None:
            problems.append(f"access policy: {srule.metric!r} is not a Postgres metric")
        elif srule.dimension not in set(dims):
            problems.append(
                f"access policy: metric {srule.metric!r} has no dimension {srule.dimension!r}"
            )
    return problems
