"""Row-level security for checked SQL: a pure transform over the checked sqlglot tree.

Every reference to a filtered table is replaced by a filtered derived table:

    FROM main.claims.claim_events AS e
 -> FROM (SELECT * FROM main.claims.claim_events WHERE `region` IN ('west')) AS e

with the principal's claim values as literals. The replacement is made at the table
reference itself, wherever it stands (joins, subqueries, CTE bodies, every branch of a
UNION, both sides of a self-join, IN/EXISTS subqueries), so no alias, query shape,
quoting or letter case can read around it: the filter is on the table, not on a name
the query chooses. A reference that names a CTE (an unqualified name visible as a CTE
where it stands, with the same scoping rules as the `allowed_tables` rule) is not a
table and is left alone; the CTE's own body is rewritten instead. An empty value set
filters every row out (`WHERE FALSE`): a principal without the claim sees nothing.

The filter sits directly on the bare table read, beneath anything written on the
reference that reshapes it: a PIVOT (which can rename a constant to the filter column),
a TABLESAMPLE, the alias (kept where it was: before the PIVOT it names the table, after
it the pivoted rows). Anything else on a filtered reference (a parenthesized join hanging
on it...) is refused (`row_filter`), never wrapped. UNPIVOT on a filtered table is refused
(`row_filter`), table functions by the rules; LATERAL VIEW applies to the FROM's rows,
already filtered.

Run it only on a tree that passed every rule (`check_sql(..., row_filters=...)` does):
it trusts that the tree is one read-only query over allowlisted, fully named tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Protocol

from sqlglot import exp

from sqlsafety.errors import SafetyViolation
from sqlsafety.names import TableName, normalize_identifier, parse_entry, qualify, table_parts
from sqlsafety.rules.tables import is_cte_reference


class RowFilter(Protocol):
    """Rows of `table` whose `column` is one of `values` (strings); no values, no rows."""

    @property
    def table(self) -> str: ...
    @property
    def column(self) -> str: ...
    @property
    def values(self) -> tuple[str, ...]: ...


@lru_cache(maxsize=256)
def _table_name(table: str, dialect: str) -> TableName:
    return parse_entry(table, dialect)


def _condition(f: RowFilter) -> exp.Expr:
    if not f.values:
        return exp.false()
    column = exp.column(exp.to_identifier(f.column, quoted=True))
    return exp.In(this=column, expressions=[exp.Literal.string(v) for v in f.values])


def _referenced_table(node: exp.Table, dialect: str) -> TableName | None:
    """The fully-qualified table `node` reads, or None for a CTE reference / non-table."""
    parts = table_parts(node, dialect)
    if parts is None:
        return None
    if len(parts) == 1 and is_cte_reference(node, parts[0], dialect):
        return None
    return qualify(parts, dialect)


# What a table reference may carry besides its name, and where it goes: the filter sits
# directly on the bare table read, and these apply to the filtered rows, outside it.
_OUTSIDE = ("alias", "pivots", "sample")
_NAME = ("this", "db", "catalog")


def _derived(node: exp.Table, f: RowFilter) -> exp.Subquery:
    """`(SELECT * FROM <bare table> WHERE <filter>) AS <alias> <pivots> <sample>`: nothing
    that reshapes, renames or synthesises columns (PIVOT, TABLESAMPLE...) stands between
    the table and its filter. Anything else on the reference is refused, never reordered."""
    extra = sorted(k for k, v in node.args.items() if v and k not in _OUTSIDE + _NAME)
    if extra:
        raise SafetyViolation(
            "row_filter",
            f"cannot apply the row filter of {f.table} directly to its read "
            f"({', '.join(extra)} on the table reference): rewrite the query without it",
        )
    inner = exp.Table(**{k: node.args[k].copy() for k in _NAME if node.args.get(k)})
    alias = node.args.get("alias")
    alias = alias.copy() if alias is not None else exp.TableAlias(this=node.this.copy())
    select = exp.select(exp.Star()).from_(inner, copy=False).where(_condition(f), copy=False)
    outer = exp.Subquery(this=select)
    sample = node.args.get("sample")
    if sample is not None:  # `(SELECT * FROM (<filtered>) TABLESAMPLE (...)) AS alias`
        outer.set("sample", sample.copy())
        outer = exp.Subquery(this=exp.select(exp.Star()).from_(outer, copy=False))
    outer.set("alias", alias)
    pivots = node.args.get("pivots")
    if any(p.args.get("unpivot") for p in pivots or ()):
        # fail closed: UNPIVOT synthesises a column from names (it may be the filter column)
        raise SafetyViolation(
            "row_filter",
            f"UNPIVOT is not allowed on {f.table}, which has row filters: unpivot an "
            "unfiltered table, or select the columns you need",
        )
    if pivots:  # `(<filtered>) AS alias PIVOT (...) [AS pivot_alias]`
        outer.set("pivots", [p.copy() for p in pivots])
    return outer


def _unqualify_columns(tree: exp.Expr, replaced: set[TableName], dialect: str) -> None:
    """`main.claims.claim_events.region` (a column qualified by the full table name) names
    the derived table by its alias, i.e. its last part."""
    for column in tree.find_all(exp.Column):
        if not column.args.get("db"):
            continue
        parts = [column.args.get(k) for k in ("catalog", "db", "table")]
        if not all(isinstance(p, exp.Identifier) for p in parts):
            continue
        name = tuple(normalize_identifier(p, dialect) for p in parts)  # type: ignore[arg-type]
        if name in replaced:
            column.set("catalog", None)
            column.set("db", None)


def apply_row_filters(
    tree: exp.Expr, filters: Iterable[RowFilter], *, dialect: str = "databricks"
) -> exp.Expr:
    """Rewrite `tree` in place (and return it) so every read of a filtered table goes
    through its filter. `filters` name tables like the allowlist does."""
    by_name = {_table_name(f.table, dialect): f for f in filters}
    if not by_name:
        return tree
    targets = []
    for node in tree.find_all(exp.Table):
        if node.find_ancestor(exp.Hint) is not None:
            continue  # a hint's table name reads nothing (the FROM it names is filtered)
        name = _referenced_table(node, dialect)
        if name is not None and name in by_name:
            targets.append((node, name))
    for node, name in targets:  # collected first: the replacements hold copies of the node
        replacement = _derived(node, by_name[name])
        if node is tree:  # pragma: no cover - a bare table is never a checked query root
            raise ValueError("a table reference cannot be the root of a query")
        node.replace(replacement)
    if targets:
        _unqualify_columns(tree, {name for _, name in targets}, dialect)
    return tree
