"""Identifier and table-name rules per dialect, and the compiled allowlist.

Names are compared as tuples of normalized parts (`TableName`):

* Databricks: unquoted and backquoted identifiers are case-insensitive, so every part is
  lower-cased. A table reference must be the full three-part ``catalog.schema.table`` name:
  a partial name would resolve against the warehouse session's current catalog and
  schema, which this layer cannot see, so it is rejected rather than guessed.
* Postgres: an unquoted identifier folds to lower case, a ``"Quoted"`` one is kept exactly.
  An unqualified ``x`` means ``public.x`` (the service's search_path; ``SET`` is rejected),
  except that names starting with ``pg_`` resolve to ``pg_catalog`` first, as Postgres
  does. Catalog-qualified (``db.schema.table``) references are rejected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache

from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from sqlsafety.errors import PolicyError, SafetyViolation

DIALECTS: tuple[str, ...] = ("databricks", "postgres")
TableName = tuple[str, ...]
POSTGRES_DEFAULT_SCHEMA = "public"


def normalize_identifier(ident: exp.Identifier, dialect: str) -> str:
    """The comparison form of one identifier under `dialect`'s case rules."""
    name: str = ident.this
    if dialect == "postgres" and ident.quoted:
        return name
    return name.lower()


def display(name: TableName) -> str:
    return ".".join(name)


def qualify(parts: tuple[str, ...], dialect: str) -> TableName:
    """Resolve normalized name parts to the fully-qualified name they denote, or reject."""
    if dialect == "databricks":
        if len(parts) != 3:
            raise SafetyViolation(
                "table_not_allowed",
                f"table {display(parts)} must be named by its full three-part catalog.schema.table name",
            )
        return parts
    if len(parts) == 1:
        schema = "pg_catalog" if parts[0].startswith("pg_") else POSTGRES_DEFAULT_SCHEMA
        return (schema, parts[0])
    if len(parts) == 2:
        return parts
    raise SafetyViolation(
        "table_not_allowed", f"table {display(parts)}: catalog-qualified names are not allowed"
    )


def table_parts(table: exp.Table, dialect: str) -> tuple[str, ...] | None:
    """The normalized parts of a named table reference; None if it is not a plain name."""
    parts = table.parts
    if not parts or not all(isinstance(p, exp.Identifier) for p in parts):
        return None
    return tuple(normalize_identifier(p, dialect) for p in parts)  # type: ignore[arg-type]


def parse_entry(entry: str, dialect: str) -> TableName:
    """Parse one allowlist or schema key (e.g. ``main.claims.claim_events``, ``kpi_metrics_history``)."""
    try:
        table = exp.to_table(entry, dialect=dialect)
    except (ParseError, TokenError) as exc:
        raise PolicyError(f"bad table name {entry!r} for {dialect}: {exc}") from exc
    parts = table_parts(table, dialect)
    if parts is None:
        raise PolicyError(f"bad table name {entry!r} for {dialect}")
    try:
        return qualify(parts, dialect)
    except SafetyViolation as exc:
        raise PolicyError(f"bad table name {entry!r} for {dialect}: {exc.reason}") from exc


@lru_cache(maxsize=128)
def compile_allowlist(dialect: str, entries: frozenset[str]) -> frozenset[TableName]:
    """The allowlist as normalized, fully-qualified names (cached: allowlists rarely change)."""
    return frozenset(parse_entry(e, dialect) for e in entries)


def compile_schema(
    schema: Mapping[str, Mapping[str, str]], dialect: str
) -> dict[TableName, frozenset[str]]:
    """{table: {column: type}} keyed by normalized table name; column names normalized
    like identifiers (Databricks lower-cases; Postgres keys are taken as stored)."""
    fold = dialect == "databricks"
    return {
        parse_entry(table, dialect): frozenset(c.lower() if fold else c for c in columns)
        for table, columns in schema.items()
    }


def freeze(entries: Iterable[str]) -> frozenset[str]:
    if isinstance(entries, str):
        raise TypeError("allowed_tables must be an iterable of table names, not one string")
    return entries if isinstance(entries, frozenset) else frozenset(entries)
