"""Rules about where rows come from: named, allowlisted tables (or CTEs and subqueries)."""

from __future__ import annotations

from sqlglot import exp

from sqlsafety.errors import SafetyViolation
from sqlsafety.names import display, normalize_identifier, qualify, table_parts
from sqlsafety.prepare import Check, show


def table_function(check: Check) -> None:
    """Rows come from named tables or subqueries only: no table-valued or generator
    functions in FROM / JOIN / LATERAL (read_files, range, generate_series, unnest, dblink...)."""
    for node in check.of(exp.Table):
        this = node.this
        if not isinstance(this, exp.Identifier):
            what = show(this, check.dialect) if this is not None else "ROWS FROM"
            raise SafetyViolation("table_function", f"table-valued function {what} is not allowed")
    for node in check.of(exp.From, exp.Join, exp.Lateral):
        this = node.this
        if isinstance(node, exp.Lateral) and is_row_expansion(node):
            continue
        if isinstance(this, exp.Func) or (
            isinstance(node, exp.Lateral) and not isinstance(this, exp.Subquery)
        ):
            raise SafetyViolation(
                "table_function",
                f"table-valued function {show(this, check.dialect)} is not allowed",
            )


# explode_outer parses to a private subclass of Explode (sqlglot 30)
EXPLODERS: tuple[type[exp.Expr], ...] = (
    exp.Explode,
    exp.Posexplode,
    exp.ExplodeOuter,
    exp.PosexplodeOuter,
    type(exp.maybe_parse("EXPLODE_OUTER(x)", dialect="databricks")),
)


def over_row_values(generator: exp.Expr) -> bool:
    """explode(x) (or posexplode, explode_outer, posexplode_outer) where x is built from the
    row's own columns, with no subquery: its size is bounded by the data already read
    (generators such as sequence() are not on the function list, literal arrays are not a
    row's values)."""
    arg = generator.this
    return (
        type(generator) in EXPLODERS
        and isinstance(arg, exp.Expr)
        and arg.find(exp.Column) is not None
        and arg.find(exp.Query) is None
    )


def is_row_expansion(lateral: exp.Lateral) -> bool:
    """``LATERAL VIEW [OUTER] explode(x) t AS v`` over the row's own values."""
    return bool(lateral.args.get("view")) and over_row_values(lateral.this)


def in_select_list(node: exp.Expr) -> bool:
    """`node` is a projection of a SELECT (possibly aliased)."""
    parent = node.parent
    if isinstance(parent, exp.Alias | exp.Aliases):
        node, parent = parent, parent.parent
    return isinstance(parent, exp.Select) and node.arg_key == "expressions"


FILE_FORMATS = frozenset(
    [
        "csv",
        "json",
        "parquet",
        "orc",
        "avro",
        "text",
        "binaryfile",
        "delta",
        "xml",
        "jdbc",
        "cloudfiles",
        "iceberg",
        "hudi",
        "image",
    ]
)


def file_reader(check: Check) -> None:
    """Path readers such as csv.`/etc/passwd` or parquet.`s3://bucket/x`."""
    for node in check.of(exp.Table):
        assert isinstance(node, exp.Table)
        parts = [p.name for p in node.parts]
        if (len(parts) == 2 and parts[0].lower() in FILE_FORMATS) or any(
            "/" in p or ":" in p for p in parts
        ):
            raise SafetyViolation(
                "file_reader", f"reading files by path ({'.'.join(parts)}) is not allowed"
            )


def _cte_name(cte: exp.Expr, dialect: str) -> str | None:
    alias = cte.args.get("alias")
    ident = alias.this if isinstance(alias, exp.TableAlias) else None
    return normalize_identifier(ident, dialect) if isinstance(ident, exp.Identifier) else None


def is_cte_reference(table: exp.Table, name: str, dialect: str) -> bool:
    """Whether an unqualified `table` names a CTE visible where it stands: the CTEs of every
    enclosing WITH, except that inside a CTE body only the CTEs defined before it count
    (all of them for WITH RECURSIVE). A CTE defined elsewhere is out of scope."""
    below: exp.Expr | None = None
    child: exp.Expr = table
    node = table.parent
    while node is not None:
        with_ = node.args.get("with_")
        if isinstance(with_, exp.With):
            ctes = with_.expressions
            visible = ctes
            if child is with_ and not with_.args.get("recursive"):
                position = next(i for i, cte in enumerate(ctes) if cte is below)
                visible = ctes[:position]
            if any(_cte_name(cte, dialect) == name for cte in visible):
                return True
        below, child, node = child, node, node.parent
    return False


def table_not_allowed(check: Check) -> None:
    """Every named table, once CTE references are set aside, is on the allowlist (records
    the tables read). A reference that is not a plain name is rejected here too, so this
    rule stays closed whether or not `table_function` ran."""
    dialect = check.dialect
    for node in check.of(exp.Table):
        assert isinstance(node, exp.Table)
        parts = table_parts(node, dialect)
        if parts is None:
            raise SafetyViolation(
                "table_not_allowed", f"unsupported table reference {show(node, dialect)}"
            )
        if len(parts) == 1 and is_cte_reference(node, parts[0], dialect):
            continue
        if len(parts) == 1 and _hinted_source(node, parts[0], dialect):
            continue
        name = qualify(parts, dialect)
        if name not in check.allowed:
            raise SafetyViolation(
                "table_not_allowed", f"table {display(name)} is not on the allowlist"
            )
        check.tables.add(name)


def _hinted_source(table: exp.Table, name: str, dialect: str) -> bool:
    """A hint's table argument that names one of its query's own sources (by alias or by
    the last part of its name): it reads nothing itself."""
    hint = table.find_ancestor(exp.Hint)
    query = hint.parent if hint is not None else None
    if query is None:
        return False
    for source in query.find_all(exp.Table):
        if source.find_ancestor(exp.Hint) is not None:
            continue
        alias = source.args.get("alias")
        names = (
            {normalize_identifier(source.this, dialect)}
            if isinstance(source.this, exp.Identifier)
            else set()
        )
        if isinstance(alias, exp.TableAlias) and isinstance(alias.this, exp.Identifier):
            names.add(normalize_identifier(alias.this, dialect))
        if name in names:
            return True
    return False
