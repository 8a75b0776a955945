"""The names and type families a construct key is made of (adapters/embedded_rule.py):
the operator or function name Databricks prints, and an argument's type family (integer,
decimal, double, string, date, timestamp, boolean, array<...>, ...) from sqlglot's type or,
for a literal, as Spark types it."""

from __future__ import annotations

import re

from sqlglot import exp
from sqlglot.errors import SqlglotError

# operators gated like functions, by the name a key spells them with
OPERATORS: dict[type[exp.Expr], str] = {
    exp.Add: "+",
    exp.Sub: "-",
    exp.Mul: "*",
    exp.Div: "/",
    exp.IntDiv: "div",
    exp.Mod: "%",
    exp.EQ: "=",
    exp.NEQ: "<>",
    exp.GT: ">",
    exp.GTE: ">=",
    exp.LT: "<",
    exp.LTE: "<=",
    exp.NullSafeEQ: "<=>",
    exp.DPipe: "||",
    exp.Like: "like",
    exp.ILike: "ilike",
    exp.In: "in",
    exp.Between: "between",
    exp.Neg: "negate",
}

_INTEGER = {"TINYINT", "SMALLINT", "INT", "BIGINT", "UTINYINT", "USMALLINT", "UINT", "UBIGINT"}
_INTEGER |= {"INT128", "UINT128", "HUGEINT", "UHUGEINT"}  # DuckDB's sums

_FAMILIES: dict[str, str] = {
    **dict.fromkeys(_INTEGER, "integer"),
    "DECIMAL": "decimal",
    "BIGDECIMAL": "decimal",
    "DOUBLE": "double",
    "FLOAT": "double",
    "VARCHAR": "string",
    "TEXT": "string",
    "CHAR": "string",
    "NCHAR": "string",
    "NVARCHAR": "string",
    "DATE": "date",
    "TIMESTAMP": "timestamp",
    "TIMESTAMPTZ": "timestamp",
    "TIMESTAMPLTZ": "timestamp",
    "TIMESTAMPNTZ": "timestamp_ntz",
    "BOOLEAN": "boolean",
    "NULL": "null",
    "BINARY": "binary",
    "VARBINARY": "binary",
    "INTERVAL": "interval",
}


def literal_family(node: exp.Literal) -> str:
    if node.is_string:
        return "string"
    text = node.name.lower()
    if "e" in text:
        return "double"
    if node.is_int:
        return "integer" if abs(int(text)) < 2**63 else "decimal"
    return "decimal"  # Spark reads 1.5 as DECIMAL(2,1)


def type_family(t: exp.DataType | None) -> str | None:
    """The family of a sqlglot type, or None when sqlglot does not know it."""
    if t is None:
        return None
    kind = t.this
    if kind == exp.DataType.Type.ARRAY:
        inner = type_family(t.expressions[0]) if t.expressions else None
        return f"array<{inner}>" if inner else None
    if kind == exp.DataType.Type.MAP:
        fams = [type_family(e) for e in t.expressions]
        return f"map<{fams[0]},{fams[1]}>" if len(fams) == 2 and None not in fams else None
    if kind == exp.DataType.Type.STRUCT:
        return "struct"
    return _FAMILIES.get(kind.name)


_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*\(")

_CLASS_NAMES: dict[type[exp.Expr], str] = {}


def construct_name(node: exp.Expr) -> str:
    """The name a key gives `node`: its operator, or the function name Databricks prints."""
    cls = type(node)
    if cls in OPERATORS:
        return OPERATORS[cls]
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    if isinstance(node, exp.Bracket):
        return "element_at" if node.args.get("offset") else "[]"
    if isinstance(node, exp.TryCast):
        return "try_cast"
    if isinstance(node, exp.Cast):
        return "cast"
    if isinstance(node, exp.Case):
        return "case"
    if isinstance(node, exp.JSONExtract) and node.args.get("variant_extract"):
        return "col:path"
    if isinstance(node, exp.WithinGroup):
        return construct_name(node.this) + " within group"
    if cls not in _CLASS_NAMES:
        _CLASS_NAMES[cls] = _printed_name(node)
    return _CLASS_NAMES[cls]


def _printed_name(node: exp.Expr) -> str:
    try:
        match = _NAME.match(node.sql("databricks"))
    except (SqlglotError, RecursionError):
        match = None
    return match.group(1).lower() if match else type(node).__name__.lower()
