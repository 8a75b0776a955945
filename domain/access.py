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

The policy is security configuration and fails closed: a missing, empty, comments-only
or malformed file, a key written twice, a directory: `load_policy` raises PolicyError
naming the problem and how to fix it, and the service refuses to start. Only the explicit
ROW_FILTERS_DISABLED=true setting starts without a policy. `AccessPolicy.fingerprint`
(SHA-256 of the canonical rules) says in /readyz which policy is in force.

Pure: no framework. The service validates the policy against the catalog at boot
(`validate_policy`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from domain.config import ConfigError, parse_yaml
from domain.identity import DEFAULT_TENANT, Principal

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){2}$")


class PolicyError(ValueError):
    """The access policy file is missing, empty or malformed, or names something that does
    not exist (the message says which, and how to fix it)."""


NO_POLICY_HINT = (
    "write the row filters there (see config/access_policy.yaml in the repository), point "
    "ACCESS_POLICY_FILE at the policy, or set ROW_FILTERS_DISABLED=true to run with no row "
    "filters at all"
)


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
    source: str | None = field(default=None, compare=False)  # the file it was read from

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the canonical rules (sorted; spelling and order of the file aside)."""
        canonical = {
            "tables": sorted([r.table, r.column, r.claim] for r in self.tables),
            "series": sorted([r.metric, r.dimension, r.claim] for r in self.series),
        }
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()

    def describe(self) -> dict[str, object]:
        """What /readyz shows of the policy in force (no rules: ROW_FILTERS_DISABLED)."""
        if not self.tables and not self.series:
            return {"row_filters": False, "path": None, "fingerprint": None}
        return {
            "row_filters": True,
            "path": self.source,
            "fingerprint": self.fingerprint,
            "tables": len(self.tables),
            "series": len(self.series),
        }

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
    """The policy from its parsed YAML. PolicyError names the bad entry; a policy with no
    rule at all (an empty or comments-only file, empty mappings) is refused too."""
    if data is None:
        raise PolicyError(f"{source}: the access policy is empty; {NO_POLICY_HINT}")
    if not isinstance(data, dict) or set(data) - {"version", "tables", "series"}:
        raise PolicyError(f"{source}: expected a mapping with 'tables' and/or 'series'")
    if data.get("version", 1) != 1:
        raise PolicyError(f"{source}: unsupported version {data['version']!r} (expected 1)")
    tables: list[TableRule] = []
    series: list[SeriesRule] = []
    raw_tables = data.get("tables")
    raw_series = data.get("series")
    raw_tables = {} if raw_tables is None else raw_tables
    raw_series = {} if raw_series is None else raw_series
    if not isinstance(raw_tables, dict) or not isinstance(raw_series, dict):
        raise PolicyError(f"{source}: 'tables' and 'series' must be mappings")
    if not raw_tables and not raw_series:
        raise PolicyError(f"{source}: the access policy has no rule; {NO_POLICY_HINT}")
    for name, raw in raw_tables.items():
        if not isinstance(name, str) or not _TABLE.match(name):
            raise PolicyError(f"{source}: table {name!r} must be a three-part catalog.schema.table")
        column, claim = _rule(f"{source}: table {name}", raw, ("column", "claim"))
        first = next((r for r in tables if r.table == name.lower()), None)
        if first is not None:  # names are case-insensitive: one table, two rules
            raise PolicyError(f"{source}: table {name!r} is listed twice (letter case aside)")
        tables.append(TableRule(name.lower(), column.lower(), claim))
    for name, raw in raw_series.items():
        if not isinstance(name, str) or not _IDENT.match(name):
            raise PolicyError(f"{source}: series {name!r} must be a metric name")
        dimension, claim = _rule(f"{source}: series {name}", raw, ("dimension", "claim"))
        series.append(SeriesRule(name, dimension, claim))
    return AccessPolicy(tables=tuple(tables), series=tuple(series), source=source)


def load_policy(path: Path) -> AccessPolicy:
    """config/access_policy.yaml, read with the strict loader of every config file (a key
    written twice is an error). PolicyError for a missing, unreadable, empty or malformed
    file: there is no implicit "no row filters"."""
    if path.is_dir():
        raise PolicyError(
            f"{path}: the access policy path is a directory, not a file; {NO_POLICY_HINT}"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(
            f"{path}: the access policy file does not exist; {NO_POLICY_HINT}"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: cannot read the access policy: {exc}") from None
    try:
        data = parse_yaml(text, str(path))
    except ConfigError as exc:
        raise PolicyError(f"{exc} (fix the access policy file)") from None
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
