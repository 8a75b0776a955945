"""The column rule: with a schema, every column of a table whose columns are known exists."""

from __future__ import annotations

from sqlglot import exp
from sqlglot.errors import OptimizeError
from sqlglot.optimizer.scope import Scope, traverse_scope

from sqlsafety.errors import SafetyViolation
from sqlsafety.names import TableName, normalize_identifier, qualify, table_parts
from sqlsafety.prepare import Check
from sqlsafety.rules.tables import is_cte_reference


def _lambda_variable(column: exp.Column, dialect: str) -> bool:
    name = (
        normalize_identifier(column.this, dialect)
        if isinstance(column.this, exp.Identifier)
        else None
    )
    node = column.parent
    while node is not None:
        if isinstance(node, exp.Lambda) and any(
            isinstance(v, exp.Identifier) and normalize_identifier(v, dialect) == name
            for v in node.expressions
        ):
            return True
        node = node.parent
    return False


def _qualified(parts: tuple[str, ...], dialect: str) -> TableName:
    """The table's full name, or () when it has none (judged by `table_not_allowed`)."""
    try:
        return qualify(parts, dialect)
    except SafetyViolation:
        return ()


def _source_columns(scope: Scope, check: Check) -> dict[str, frozenset[str] | None]:
    """{normalized alias: known columns, or None when the source's columns are unknown}."""
    assert check.schema is not None
    out: dict[str, frozenset[str] | None] = {}
    for _name, (_node, source) in scope.selected_sources.items():
        if isinstance(source, exp.Table) and isinstance(source.this, exp.Identifier):
            alias = source.args.get("alias")
            ident = alias.this if isinstance(alias, exp.TableAlias) and alias.this else source.this
            parts = table_parts(source, check.dialect)
            columns = None
            if parts is not None and not (
                len(parts) == 1 and is_cte_reference(source, parts[0], check.dialect)
            ):
                columns = check.schema.get(_qualified(parts, check.dialect))
            out[normalize_identifier(ident, check.dialect)] = columns
        else:
            out[_name.lower() if check.dialect == "databricks" else _name] = None
    return out


def _select_aliases(scope: Scope, dialect: str) -> set[str]:
    """Names the select list defines with AS (usable in ORDER BY, HAVING, lateral aliases)."""
    expression = scope.expression
    if not isinstance(expression, exp.Select):
        return set()
    return {
        a.alias.lower() if dialect == "databricks" else a.alias
        for a in expression.expressions
        if isinstance(a, exp.Alias)
    }


def unknown_column(check: Check) -> None:
    """With a schema: a column of a table whose columns are known must exist. An
    unqualified column is checked only when every source it could come from (this scope
    and the enclosing ones) has a known schema; select-list aliases and lambda variables
    are not columns."""
    if check.schema is None:
        return
    for statement in check.statements:
        _check_statement(statement, check)


def _check_statement(statement: exp.Expr, check: Check) -> None:
    dialect = check.dialect
    try:
        scopes = traverse_scope(statement)
        sources = {id(s): _source_columns(s, check) for s in scopes}
    except OptimizeError:
        return  # ambiguous aliases: the warehouse will report them; nothing unsafe here
    for scope in scopes:
        if not isinstance(scope.expression, exp.Select):
            continue
        for column in scope.columns:
            this = column.this
            if not isinstance(this, exp.Identifier) or _lambda_variable(column, dialect):
                continue
            name = normalize_identifier(this, dialect)
            qualifier = column.args.get("table")
            if isinstance(qualifier, exp.Identifier):
                known = sources[id(scope)].get(normalize_identifier(qualifier, dialect))
                if known is not None and name not in known:
                    raise SafetyViolation(
                        "unknown_column", f"column {qualifier.name}.{this.name} does not exist"
                    )
                continue
            if name in _select_aliases(scope, dialect):
                continue
            candidates = _unqualified_candidates(scope, sources)
            if candidates is not None and name not in candidates:
                raise SafetyViolation(
                    "unknown_column", f"column {this.name} does not exist in the queried tables"
                )


def _unqualified_candidates(
    scope: Scope, sources: dict[int, dict[str, frozenset[str] | None]]
) -> set[str] | None:
    """The columns an unqualified name may refer to, or None when some source is unknown."""
    candidates: set[str] = set()
    seen_source = False
    current: Scope | None = scope
    while current is not None:
        for columns in sources.get(id(current), {}).values():
            if columns is None:
                return None
            seen_source = True
            candidates |= columns
        # only a subquery (or a LATERAL derived table) can see the enclosing query's columns
        current = current.parent if (current.is_subquery or current.can_be_correlated) else None
    return candidates if seen_source else None
