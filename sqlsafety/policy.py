"""`check_sql`: prepare (parse + index), run every rule, render.

The returned `CheckedSql.sql` is generated from the checked tree (comments dropped, the
row limit applied), never the candidate text: whatever the text hid from the parser
(comment or quoting tricks) cannot reach the warehouse.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlglot import exp
from sqlglot.errors import ErrorLevel, UnsupportedError

from sqlsafety.dialect import faithful_databricks
from sqlsafety.errors import PolicyError, SafetyViolation
from sqlsafety.names import compile_allowlist, compile_schema, display, freeze
from sqlsafety.prepare import MAX_SQL_CHARS, Check, engine, prepare
from sqlsafety.row_filters import RowFilter, apply_row_filters
from sqlsafety.rules import RULES, Rule
from sqlsafety.rules.disclosure import SUBSTITUTION

# Bump whenever a rule, list or rendering choice changes: approved SQL is cached under it.
POLICY_VERSION = "sqlsafety-7"

__all__ = ["MAX_SQL_CHARS", "POLICY_VERSION", "CheckedSql", "check_sql"]


@dataclass(frozen=True, slots=True)
class CheckedSql:
    sql: str  # re-rendered from the checked tree in the same dialect: THIS is what runs
    tables: frozenset[str]  # normalized, fully-qualified names (public.x for postgres)
    limit: int  # the effective row limit of the outermost query
    # the checked SQL before row filters: == sql without filters; with filters only when
    # asked for (`keep_unfiltered`), else ""
    unfiltered_sql: str = field(default="", compare=False)


def check_sql(
    sql: str,
    *,
    dialect: str = "databricks",
    allowed_tables: Iterable[str],
    max_rows: int = 10_000,
    schema: Mapping[str, Mapping[str, str]] | None = None,
    rules: Sequence[Rule] = RULES,
    row_filters: Iterable[RowFilter] = (),
    keep_unfiltered: bool = False,
    hidden_columns: bool = False,
) -> CheckedSql:
    """Check one candidate query; raise `SafetyViolation` (attrs `rule`, `reason`) if unsafe.

    `allowed_tables` holds names like ``main.claims.claim_events`` (databricks, three-part)
    or ``kpi_metrics_history`` / ``public.kpi_metrics_history`` (postgres). `schema`
    ({table: {column: type}}), when given, also rejects unknown columns of those tables.
    `row_filters`, applied after every rule passed, replace each read of a filtered table
    with a filtered derived table (`sqlsafety.row_filters`); `sql` is then the filtered SQL
    (what runs) and, with `keep_unfiltered`, `unfiltered_sql` the checked SQL without them
    (rendered from a copy taken first: it costs a tree copy and a second rendering).
    `hidden_columns` allows hidden metadata columns (`_metadata`): only for a metric whose
    definition reads them. `rules` is for tests and tools (any order gives the same
    verdicts); the default is all.
    Raises PolicyError (a ValueError) for bad arguments (unknown dialect, malformed
    allowlist, max_rows < 1).
    """
    engine(dialect)
    if max_rows < 1:
        raise PolicyError("max_rows must be at least 1")
    allowed = compile_allowlist(dialect, freeze(allowed_tables))
    compiled_schema = compile_schema(schema, dialect) if schema is not None else None
    check = prepare(
        sql,
        dialect=dialect,
        allowed=allowed,
        max_rows=max_rows,
        schema=compiled_schema,
        hidden_columns=hidden_columns,
    )
    for rule in rules:
        rule(check)
    return render(check, row_filters=tuple(row_filters), keep_unfiltered=keep_unfiltered)


def render(
    check: Check, *, row_filters: tuple[RowFilter, ...] = (), keep_unfiltered: bool = False
) -> CheckedSql:
    """The final step, after every rule passed: apply the row limit and print the tree."""
    if len(check.statements) != 1:  # only reachable with a rule list lacking single_statement
        raise SafetyViolation("single_statement", "expected exactly one statement")
    tree = check.statements[0]  # every rule has run: the tree is ours to finish
    limit = check.limit
    if tree.args.get("limit") is None:
        tree.set("limit", exp.Limit(expression=exp.Literal.number(check.max_rows)))
        limit = check.max_rows
    elif limit is None:  # only reachable with a rule list lacking row_limit
        raise SafetyViolation("row_limit", "the row limit was not checked")
    generator = engine(check.dialect).generator(comments=False, unsupported_level=ErrorLevel.RAISE)
    try:
        if check.dialect == "databricks":
            # e.g. sqlglot prints 2-argument DATEDIFF(end, start) as DATEDIFF(DAY, start, end)
            # (whole 24-hour periods, not calendar days): keep what the checked SQL means.
            tree = faithful_databricks(tree)
        if row_filters and keep_unfiltered:
            # filtered on a copy taken before rendering (rendering may transform its tree)
            filtered = apply_row_filters(tree.copy(), row_filters, dialect=check.dialect)
            unfiltered = generator.generate(tree, copy=False)
            rendered = generator.generate(filtered, copy=False)
        elif row_filters:
            tree = apply_row_filters(tree, row_filters, dialect=check.dialect)
            rendered, unfiltered = generator.generate(tree, copy=False), ""
        else:
            rendered = unfiltered = generator.generate(tree, copy=False)
    except UnsupportedError as exc:
        raise SafetyViolation(
            "render", f"cannot render faithfully in {check.dialect}: {exc}"
        ) from None
    except RecursionError:
        raise SafetyViolation("render", "SQL nested too deeply to render") from None
    if SUBSTITUTION in rendered or SUBSTITUTION in unfiltered:
        # what runs must never carry a Spark variable (a claim value, an escape decoded)
        raise SafetyViolation(
            "variable_substitution", "'${' in the SQL to run: Spark would substitute it"
        )
    return CheckedSql(
        sql=rendered,
        tables=frozenset(display(t) for t in check.tables),
        limit=limit,
        unfiltered_sql=unfiltered,
    )
