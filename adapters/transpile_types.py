"""A minimal typer for the Databricks -> DuckDB fixes: what kind of value an expression
gives, from the demo lakehouse's column types and the shape of the expression. Unknown is
None, and a fix that needs the kind is then not applied."""

from __future__ import annotations

from sqlglot import exp

from adapters.lakehouse import TABLES

INTEGER_TYPES = {
    exp.DataType.Type.TINYINT,
    exp.DataType.Type.SMALLINT,
    exp.DataType.Type.INT,
    exp.DataType.Type.BIGINT,
}
_COLUMN_TYPES: dict[str, str] = {col: typ for cols in TABLES.values() for col, typ in cols}


def kind_of(node: exp.Expr) -> str | None:
    """'fraction' (decimal/double), 'integer', 'timestamp', 'date', 'string' or None."""
    if isinstance(node, exp.Paren | exp.Neg):
        return kind_of(node.this)
    if isinstance(node, exp.Column):
        return _kind_of_type(_COLUMN_TYPES.get(node.name.lower(), ""))
    if isinstance(node, exp.Literal):
        if node.is_string:
            return "string"
        return "integer" if node.is_int else "fraction"
    if isinstance(node, exp.Cast):
        return _kind_of_type(node.to.sql("databricks"))
    if isinstance(node, exp.Div | exp.Avg | exp.Quantile | exp.Median | exp.PercentileCont):
        return "fraction"
    if isinstance(node, exp.Sum | exp.Min | exp.Max | exp.Round | exp.Add | exp.Sub | exp.Mul):
        kinds = {kind_of(a) for a in (node.this, node.args.get("expression")) if a is not None}
        return "fraction" if "fraction" in kinds else ("integer" if kinds == {"integer"} else None)
    if isinstance(node, exp.CurrentTimestamp | exp.TimestampFromParts | exp.StrToTime):
        return "timestamp"
    if isinstance(node, exp.Count):
        return "integer"
    return None


def _kind_of_type(text: str) -> str | None:
    t = text.upper()
    if t.startswith(("DECIMAL", "DOUBLE", "FLOAT", "REAL", "NUMERIC")):
        return "fraction"
    if t in {"INT", "BIGINT", "SMALLINT", "TINYINT", "INTEGER"}:
        return "integer"
    if t.startswith("TIMESTAMP"):
        return "timestamp"
    if t == "DATE":
        return "date"
    if t in {"STRING", "VARCHAR", "TEXT"}:
        return "string"
    return None
