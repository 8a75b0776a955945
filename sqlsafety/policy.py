"""`check_sql`: parse once in an explicit dialect, run every rule, re-render.

The returned `CheckedSql.sql` is generated from the checked tree (comments dropped, the
row limit applied), never the candidate text: whatever the text hid from the parser
(comment or quoting tricks) cannot reach the warehouse.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ErrorLevel, ParseError, TokenError, UnsupportedError

from metricsql.dialect import datediff_with_unit_as_timestampdiff, keep_two_argument_datediff
from sqlsafety.errors import SafetyViolation, UnparseableSql
from sqlsafety.names import DIALECTS, compile_allowlist, compile_schema, display, freeze
from sqlsafety.rules import RULES, Check

# Bump whenever a rule, list or rendering choice changes: approved SQL is cached under it.
POLICY_VERSION = "sqlsafety-4"
MAX_SQL_CHARS = 100_000


@dataclass(frozen=True, slots=True)
class CheckedSql:
    sql: str  # re-rendered from the checked tree in the same dialect: THIS is what runs
    tables: frozenset[str]  # normalized, fully-qualified names (public.x for postgres)
    limit: int  # the effective row limit of the outermost query


# Built once: Dialect.get_or_raise(str) constructs a new instance on every call (~35 µs).
_ENGINES: dict[str, Dialect] = {name: Dialect.get_or_raise(name) for name in DIALECTS}


def _dialect(name: str) -> Dialect:
    engine = _ENGINES.get(name)
    if engine is None:
        raise ValueError(f"unsupported dialect {name!r}: expected one of {', '.join(DIALECTS)}")
    return engine


def check_sql(
    sql: str,
    *,
    dialect: str = "databricks",
    allowed_tables: Iterable[str],
    max_rows: int = 10_000,
    schema: Mapping[str, Mapping[str, str]] | None = None,
) -> CheckedSql:
    """Check one candidate query; raise `SafetyViolation` (attrs `rule`, `reason`) if unsafe.

    `allowed_tables` holds names like ``main.claims.claim_events`` (databricks, three-part)
    or ``kpi_metrics_history`` / ``public.kpi_metrics_history`` (postgres). `schema`
    ({table: {column: type}}), when given, also rejects unknown columns of those tables.
    Raises ValueError for bad arguments (unknown dialect, malformed allowlist, max_rows < 1).
    """
    engine = _dialect(dialect)
    if max_rows < 1:
        raise ValueError("max_rows must be at least 1")
    allowed = compile_allowlist(dialect, freeze(allowed_tables))
    compiled_schema = compile_schema(schema, dialect) if schema is not None else None
    if len(sql) > MAX_SQL_CHARS:
        raise SafetyViolation("parse", f"SQL longer than {MAX_SQL_CHARS} characters")
    try:
        tokens = engine.tokenize(sql)
        if dialect == "databricks":
            tokens = datediff_with_unit_as_timestampdiff(tokens)
        statements = engine.parser().parse(tokens, sql)
    except (ParseError, TokenError) as exc:
        raise UnparseableSql(f"not valid {dialect} SQL: {str(exc).splitlines()[0][:200]}") from None
    except RecursionError:
        raise UnparseableSql("SQL nested too deeply") from None

    check = Check(
        dialect=dialect,
        allowed=allowed,
        max_rows=max_rows,
        schema=compiled_schema,
        statements=statements,
    )
    for rule in RULES:
        rule(check)

    generator = engine.generator(comments=False, unsupported_level=ErrorLevel.RAISE)
    try:
        tree = check.tree
        if dialect == "databricks":
            # sqlglot would print 2-argument DATEDIFF(end, start) as DATEDIFF(DAY, start, end),
            # which counts whole 24-hour periods instead of calendar days: keep its meaning.
            tree = keep_two_argument_datediff(tree)
        rendered = generator.generate(tree, copy=False)
    except UnsupportedError as exc:
        raise SafetyViolation("render", f"cannot render faithfully in {dialect}: {exc}") from None
    except RecursionError:
        raise SafetyViolation("render", "SQL nested too deeply to render") from None
    return CheckedSql(
        sql=rendered, tables=frozenset(display(t) for t in check.tables), limit=check.limit
    )
