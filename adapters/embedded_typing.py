"""The embedded rule's typing (adapters/embedded_rule.py): a qualified, type-annotated copy
of a query over the lakehouse schema (sqlglot's `annotate_types`), the source of each
column read from a CTE, subquery or derived table (so the rule types it by the projection
that computes it, as Spark does, not by sqlglot's guess), and Spark's widening of set
operation branches."""

from __future__ import annotations

from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, traverse_scope

from adapters.embedded_refusals import EmbeddedUnsupported
from adapters.lakehouse import TABLES


def lakehouse_schema() -> dict[str, object]:
    """The demo tables as sqlglot's nested schema: catalog -> database -> table -> columns."""
    schema: dict[str, dict[str, dict[str, dict[str, str]]]] = {}
    for name, cols in TABLES.items():
        catalog, db, table = name.split(".")
        schema.setdefault(catalog, {}).setdefault(db, {})[table] = dict(cols)
    return dict(schema)


def typed(tree: exp.Expr) -> exp.Expr:
    """A qualified, type-annotated copy of `tree` (raises EmbeddedUnsupported if it cannot)."""
    schema = lakehouse_schema()
    tree = tree.copy()
    for select in tree.find_all(exp.Select):
        alias = select.parent.args.get("alias") if select.parent else None
        if isinstance(alias, exp.TableAlias) and alias.columns:
            continue  # s(v, w): qualify names the projections by these, and they stay
        for projection in select.expressions:
            if not isinstance(projection, exp.Alias | exp.Column | exp.Star):
                projection.meta["unaliased"] = True
    try:
        q = qualify(
            tree,
            schema=schema,
            dialect="databricks",
            validate_qualify_columns=False,
            identify=False,
        )
        annotated = annotate_types(q, schema=schema, dialect="databricks")
    except (SqlglotError, KeyError, ValueError) as e:
        raise EmbeddedUnsupported(f"a query whose column types cannot be known ({e})") from e
    # qualify names every projection (_col_0): keep the engine's own name, as written
    for alias in list(annotated.find_all(exp.Alias)):
        if alias.this.meta.get("unaliased") and isinstance(alias.parent, exp.Select):
            alias.replace(alias.this)
    # columns of a LATERAL VIEW keep their bare names (sqlglot's DuckDB output loses the
    # alias), typed as Spark types them: an element of the array (sqlglot: the array), and
    # posexplode's position an INT
    laterals = {lat.alias: _lateral_types(lat) for lat in annotated.find_all(exp.Lateral)}
    for col in annotated.find_all(exp.Column):
        if col.table and col.table in laterals:
            types = laterals[col.table]
            col.type = types.get(col.name, exp.DataType.build("UNKNOWN"))
            col.set("table", None)
    return annotated


def _lateral_types(lateral: exp.Lateral) -> dict[str, exp.DataType]:
    """The type of each column a LATERAL VIEW explode/posexplode names (none when the
    generator or its array's element type is unknown: the column is then unknown)."""
    udtf, alias = lateral.this, lateral.args.get("alias")
    if not isinstance(udtf, exp.Explode) or not isinstance(alias, exp.TableAlias):
        return {}
    array = udtf.this.type
    if array is None or not array.is_type(exp.DataType.Type.ARRAY) or not array.expressions:
        return {}
    element = array.expressions[0]
    if not isinstance(element, exp.DataType):
        return {}
    kinds = [exp.DataType.build("INT"), element] if isinstance(udtf, exp.Posexplode) else [element]
    names = [c.name for c in alias.columns]
    return dict(zip(names, kinds, strict=False)) if len(names) == len(kinds) else {}


def column_sources(root: exp.Expr) -> dict[int, tuple[Scope, str]]:
    """Each column of `root` read from a CTE, subquery or derived table (by node id): that
    source's scope and the column's name there. Empty when the scopes cannot be built (the
    columns keep sqlglot's types, None where it does not know)."""
    out: dict[int, tuple[Scope, str]] = {}
    try:
        scopes = traverse_scope(root)
    except (SqlglotError, KeyError, ValueError, RecursionError):
        return out
    for scope in scopes:
        for col in scope.columns:
            source = scope.sources.get(col.table)
            if isinstance(source, Scope):
                out[id(col)] = (source, col.name)
    return out


_NUMERIC_RANK = {"integer": 0, "decimal": 1, "double": 2}


def widen(families: list[str | None]) -> str | None:
    """The family Spark gives a column its set operation's branches (or a CASE's values)
    give as `families`: one family; integer and decimal as decimal; with a double, double;
    a NULL takes the other's. Anything else (text with numbers, dates with timestamps) is
    left unknown, so its use is refused."""
    known = {f for f in families if f != "null"}
    if None in known:
        return None
    if not known:
        return "null"
    if len(known) == 1:
        return known.pop()
    if known <= _NUMERIC_RANK.keys():
        return max(known, key=lambda f: _NUMERIC_RANK[f] if f else 0)
    return None


_TYPES = {
    "integer": "BIGINT",
    "double": "DOUBLE",
    "string": "STRING",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "boolean": "BOOLEAN",
}


def retype(col: exp.Column, family: str) -> None:
    """Give `col` the type of `family` where sqlglot guessed another (a CTE's avg(decimal)
    is a DECIMAL on Spark, a DOUBLE to sqlglot). A DECIMAL's precision is not known here:
    its type is left unknown, which no translation rule reads as a DECIMAL."""
    col.type = exp.DataType.build(_TYPES[family]) if family in _TYPES else None


def branches(node: exp.Expr) -> list[exp.Expr]:
    """A set operation's SELECTs, left to right (a SELECT is its own one branch)."""
    while isinstance(node, exp.Subquery | exp.Paren):
        node = node.this
    if isinstance(node, exp.SetOperation):
        return branches(node.this) + branches(node.expression)
    return [node]
