"""Text and structure rules: substrings, `col:path` JSON access and from_json schemas."""

from __future__ import annotations

import json
import re

import sqlglot
from sqlglot import exp

from adapters.embedded_refusals import EmbeddedUnsupported
from adapters.transpile_rules.build import TARGET, fn


def substring(node: exp.Expr) -> exp.Expr:
    """substring(s, 0, n) starts at the first character in Databricks (DuckDB: at "0")."""
    if not isinstance(node, exp.Substring):
        return node
    start = node.args.get("start")
    if isinstance(start, exp.Literal) and not start.is_string and start.to_py() == 0:
        fixed = node.copy()
        fixed.set("start", exp.Literal.number(1))
        return fixed
    if start is not None and not isinstance(start, exp.Literal | exp.Neg):
        fixed = node.copy()
        fixed.set(
            "start",
            exp.Case()
            .when(
                exp.EQ(this=start.copy(), expression=exp.Literal.number(0)), exp.Literal.number(1)
            )
            .else_(start.copy()),
        )
        return fixed
    return node


def colon_path(node: exp.Expr) -> exp.Expr:
    """col:a.b (Databricks semi-structured access on a JSON string) is a STRING (text for
    scalars, JSON text for objects, NULL when missing), like get_json_object; sqlglot
    emits DuckDB `->` (strings still quoted): JSON_EXTRACT_STRING(col, '$.a.b')."""
    if not (isinstance(node, exp.JSONExtract) and node.args.get("variant_extract")):
        return node
    path = node.expression
    rendered = path.sql(dialect=TARGET)  # a quoted DuckDB string literal: '$.a.b'
    literal = sqlglot.parse_one(rendered, read=TARGET)
    path_text = literal.name if isinstance(literal, exp.Literal) and literal.is_string else ""
    if not path_text.startswith("$"):
        return node
    return _valid_json_only(
        node.this, fn("JSON_EXTRACT_STRING", node.this.copy(), exp.Literal.string(path_text))
    )


def split(node: exp.Expr) -> exp.Expr:
    """split(s, NULL) is NULL in Databricks (DuckDB splits on nothing)."""
    if not isinstance(node, exp.RegexpSplit) or node.meta.get("null_checked"):
        return node
    inner = node.copy()
    inner.meta["null_checked"] = True
    test = exp.Is(this=node.expression.copy(), expression=exp.Null())
    return exp.Case().when(test, exp.Null()).else_(inner)


def get_json_object(node: exp.Expr) -> exp.Expr:
    """get_json_object(s, path) is NULL when s is not JSON (DuckDB raises)."""
    if not isinstance(node, exp.JSONExtractScalar) or node.meta.get("json_checked"):
        return node
    inner = node.copy()
    inner.meta["json_checked"] = True
    return _valid_json_only(node.this, inner)


def _valid_json_only(text: exp.Expr, value: exp.Expr) -> exp.Expr:
    return exp.Case().when(fn("JSON_VALID", text.copy()), value)


_SCALARS = {
    "STRING": "VARCHAR",
    "INT": "INTEGER",
    "INTEGER": "INTEGER",
    "BIGINT": "BIGINT",
    "DOUBLE": "DOUBLE",
    "BOOLEAN": "BOOLEAN",
    "DATE": "DATE",
}


def _json_structure(ddl: str) -> object:
    """A Spark DDL schema string (`a STRING, b INT`, `MAP<STRING, STRING>`, `ARRAY<INT>`,
    `STRUCT<a: STRING>`) as DuckDB's from_json structure, or refuse."""
    text = ddl.strip()
    upper = text.upper()
    try:
        if upper.startswith(("MAP<", "ARRAY<", "STRUCT<")) or upper in _SCALARS:
            return _structure(exp.DataType.build(text, dialect="databricks"))
        fields = [f.strip() for f in _split_top_level(text)]
        out = {}
        for field in fields:
            name, _, typ = field.partition(" ")
            out[name.strip("`")] = _structure(exp.DataType.build(typ.strip(), dialect="databricks"))
        return out
    except (ValueError, sqlglot.errors.ParseError) as e:
        raise EmbeddedUnsupported(f"from_json() schema {ddl!r}") from e


def _structure(t: exp.DataType) -> object:
    name = t.this.name
    if t.this == exp.DataType.Type.MAP:
        k, v = t.expressions
        return f"MAP({_scalar(k)}, {_scalar(v)})"
    if t.this == exp.DataType.Type.ARRAY:
        return [_structure(t.expressions[0])]
    if t.this == exp.DataType.Type.STRUCT:
        return {c.name: _structure(c.args["kind"]) for c in t.expressions}
    return _scalar(t) if name else "VARCHAR"


def _scalar(t: exp.Expr) -> str:
    text = t.sql("databricks").upper()
    if text not in _SCALARS:
        raise ValueError(text)
    return _SCALARS[text]


def _split_top_level(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch in "<("
        depth -= ch in ">)"
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def from_json(node: exp.Expr) -> exp.Expr:
    """from_json(s, 'a STRING, ...') takes a Spark DDL schema string; DuckDB a structure."""
    if not isinstance(node, exp.FromJson):
        return node
    schema = node.expression
    if not (isinstance(schema, exp.Literal) and schema.is_string) or node.args.get("options"):
        raise EmbeddedUnsupported("from_json() without a literal schema")
    structure = _json_structure(schema.name)
    return fn("FROM_JSON", node.this, exp.Literal.string(json.dumps(structure)))


# a LIKE pattern Databricks accepts: its escape (the backslash) only before `_`, `%` or itself
_LIKE_PATTERN = re.compile(r"(?:[^\\]|\\[_%\\])*", re.S)
_LIKE_INVALID = (
    "[INVALID_FORMAT.ESC_IN_THE_MIDDLE] the escape character may only precede _, % or \\"
)


def like_escape(node: exp.Expr) -> exp.Expr:
    """LIKE and ILIKE escape with the backslash in Databricks (DuckDB: no escape unless
    told), and a pattern with the escape before any other character, or at its end, is an
    error there."""
    if not isinstance(node, exp.Like | exp.ILike) or isinstance(node.parent, exp.Escape):
        return node
    if node.meta.get("escaped"):
        return node
    inner = node.copy()
    inner.meta["escaped"] = True
    escaped = exp.Escape(this=inner, expression=exp.Literal.string("\\"))
    pattern = node.expression
    failure = fn("ERROR", exp.Literal.string(_LIKE_INVALID))
    if isinstance(pattern, exp.Literal) and pattern.is_string:
        return escaped if _LIKE_PATTERN.fullmatch(pattern.name) else failure
    if isinstance(pattern, exp.Null):
        return escaped
    valid = fn("REGEXP_FULL_MATCH", pattern.copy(), exp.Literal.string(_LIKE_PATTERN.pattern))
    return exp.Case().when(exp.Not(this=valid), failure).else_(exp.Paren(this=escaped))
