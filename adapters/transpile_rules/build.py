"""Helpers every translation rule shares: building DuckDB calls and casts, filling
templates, and reading the argument types the embedded rule annotated."""

from __future__ import annotations

from sqlglot import exp

from metricsql import dialect

SOURCE = dialect.DATABRICKS
TARGET = "duckdb"


def fn(name: str, *args: exp.Expr) -> exp.Expr:
    """A DuckDB function call by name."""
    return exp.Anonymous(this=name, expressions=list(args))


def date(e: exp.Expr) -> exp.Expr:
    return exp.cast(e, exp.DataType.build("DATE"))


def tstz(e: exp.Expr) -> exp.Expr:
    """CAST(e AS TIMESTAMPTZ): a Databricks TIMESTAMP is an instant; dates become UTC midnight."""
    return exp.cast(e.copy(), exp.DataType.build("TIMESTAMPTZ"))


def double(e: exp.Expr) -> exp.Expr:
    return exp.cast(e.copy(), exp.DataType.build("DOUBLE"))


def substitute(template: exp.Expr, values: dict[str, exp.Expr]) -> exp.Expr:
    """Replace the template's placeholder columns (__s, __e, ...) with copies of `values`."""
    for col in list(template.find_all(exp.Column)):
        if col.name in values and not col.table:
            col.replace(values[col.name].copy())
    return template


def _is(e: exp.Expr, *types: exp.DType) -> bool:
    while isinstance(e, exp.Paren):
        e = e.this
    return e.type is not None and e.type.is_type(*types)


def is_text(e: exp.Expr) -> bool:
    return _is(e, *exp.DataType.TEXT_TYPES)


def is_fraction(e: exp.Expr) -> bool:
    """A DECIMAL or floating-point value (sqlglot's annotated type)."""
    return _is(e, *exp.DataType.REAL_TYPES)


def is_timestamp(e: exp.Expr) -> bool:
    return _is(
        e,
        exp.DataType.Type.TIMESTAMP,
        exp.DataType.Type.TIMESTAMPTZ,
        exp.DataType.Type.TIMESTAMPLTZ,
    )


INTEGER_TYPES = {
    exp.DataType.Type.TINYINT,
    exp.DataType.Type.SMALLINT,
    exp.DataType.Type.INT,
    exp.DataType.Type.BIGINT,
}
