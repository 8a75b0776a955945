"""Databricks SQL -> DuckDB SQL with sqlglot, plus fixes for the gaps that change results.

`to_duckdb` parses one query in the Databricks dialect, rewrites the sqlglot expressions
listed below (never the text), and generates DuckDB SQL. Every fix was checked against
real Spark SQL in ANSI mode (tests/test_spark_reference.py runs both engines on the same
data and compares rows):

* TIMESTAMPDIFF(unit, start, end), and its synonym DATEDIFF(unit, start, end), count
  whole elapsed units in Databricks (61 s is 1 minute; -61 s is -1), while sqlglot emits
  DuckDB `date_diff`, which counts crossed boundaries (00:00:59 -> 00:02:00 is 2).
  Rewritten to DuckDB `date_sub(unit, start, end)` ("complete partitions") for time
  units, DAY and WEEK; MONTH/QUARTER/YEAR follow Java's ChronoUnit rule (Jan 31 ->
  Feb 28 is 0 months, date_sub says 1) with an explicit date arithmetic expression. sqlglot
  parses 2- and 3-argument DATEDIFF to the same node, so 3-argument calls are renamed
  to TIMESTAMPDIFF at the token level before parsing (metricsql.dialect.parse);
  2-argument DATEDIFF(end, start) (days between dates) is left to sqlglot, which
  translates it right.
* UNIX_TIMESTAMP(ts) returns whole seconds (BIGINT, fraction floored) of a timestamp,
  date or 'yyyy-MM-dd HH:mm:ss' string; sqlglot emits EPOCH(STRPTIME(ts, ...)), which
  fails on timestamps. Rewritten to CAST(FLOOR(EPOCH(CAST(ts AS TIMESTAMPTZ))) AS BIGINT).
  With an explicit non-default format the STRPTIME form is kept, floored to BIGINT.
* TRUNC(ts, fmt) returns a DATE and accepts YEAR/YYYY/YY, QUARTER, MONTH/MM/MON, WEEK
  (NULL for anything else); sqlglot passes 'MM' etc. through to DuckDB, which rejects
  them, and keeps a timestamp. Rewritten to CAST(DATE_TRUNC(unit, ...) AS DATE) with
  the unit spelled the DuckDB way, or NULL. DATE_TRUNC(fmt, ts) keeps its timestamp
  type; only its Spark unit spellings (MM, MON, YYYY, YY, DD) are normalised.
  (sqlglot itself expands 'Q'/'W' to QUARTER/WEEK, which Spark's TRUNC would reject.)
* col:path (Databricks semi-structured access on a JSON string) returns the value as a
  STRING (text for scalars, JSON text for objects, NULL when missing), like
  get_json_object; sqlglot emits DuckDB `->` (a JSON value, strings still quoted).
  Rewritten to JSON_EXTRACT_STRING(col, '$.path').
* Division by zero raises in Databricks (ANSI mode: [DIVIDE_BY_ZERO] for `/` and `div`,
  [REMAINDER_BY_ZERO] for `%`); DuckDB returns NULL or inf. The divisor becomes
  CASE WHEN d = 0 THEN ERROR('[DIVIDE_BY_ZERO] ...') ELSE d END (a NULL divisor still
  gives NULL, as in Databricks). Non-zero numeric literal divisors are left alone; the
  divisor expression is repeated, so nested divisions in divisors grow the SQL.

Only a single query (SELECT / set operation) is accepted: anything else, or SQL sqlglot
cannot parse or translate, raises `TranspileError`.
"""

from __future__ import annotations

import re

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, SqlglotError

from adapters.embedded_refusals import EmbeddedUnsupported, TranspileError, refuse_unsupported
from adapters.transpile_fixes import fix
from metricsql import dialect

__all__ = ["EmbeddedUnsupported", "TranspileError", "apply_fixes", "parse_databricks", "to_duckdb"]

DIVIDE_BY_ZERO_MESSAGE = "[DIVIDE_BY_ZERO] Division by zero"
REMAINDER_BY_ZERO_MESSAGE = "[REMAINDER_BY_ZERO] Remainder by zero"

_SOURCE = dialect.DATABRICKS
_TARGET = "duckdb"

# Spark TRUNC formats -> DuckDB date parts (anything else gives NULL in Spark).
_TRUNC_UNITS = {
    "YEAR": "year",
    "YYYY": "year",
    "YY": "year",
    "QUARTER": "quarter",
    "MONTH": "month",
    "MM": "month",
    "MON": "month",
    "WEEK": "week",
}
# Spark DATE_TRUNC unit spellings DuckDB does not know.
_DATE_TRUNC_UNITS = {"YYYY": "YEAR", "YY": "YEAR", "MM": "MONTH", "MON": "MONTH", "DD": "DAY"}
_TIMESTAMPDIFF_UNITS = {
    "MICROSECOND",
    "MILLISECOND",
    "SECOND",
    "MINUTE",
    "HOUR",
    "DAY",
    "WEEK",
    "MONTH",
    "QUARTER",
    "YEAR",
}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # sqlglot underlines the error position in messages


def to_duckdb(sql: str) -> str:
    """Translate one Databricks SQL query to DuckDB SQL (see the module docstring)."""
    try:
        tree = parse_databricks(sql)
        fixed = apply_fixes(tree)
        return fixed.sql(dialect=_TARGET, unsupported_level=ErrorLevel.RAISE)
    except EmbeddedUnsupported:
        raise
    except SqlglotError as e:
        raise TranspileError(_ANSI.sub("", str(e))) from e
    except RecursionError as e:
        raise TranspileError("SQL nested too deeply") from e


def parse_databricks(sql: str) -> exp.Query:
    """Parse exactly one Databricks query, with 3-argument DATEDIFF read as TIMESTAMPDIFF."""
    trees = dialect.parse(sql)
    if len(trees) != 1:
        raise TranspileError(f"expected one statement, got {len(trees)}")
    tree = trees[0]
    if not isinstance(tree, exp.Query):
        raise TranspileError(f"only a query can run here, not {tree.key.upper()}")
    return tree


def apply_fixes(tree: exp.Query) -> exp.Query:
    """Apply every fix bottom-up (children before parents) on a copy of `tree`."""
    root: exp.Expr = tree.copy()
    refuse_unsupported(root)
    for select in root.find_all(exp.Select):  # optimizer hints change plans, never rows
        select.set("hint", None)
    for node in reversed(list(root.walk())):
        fixed = _fix(node)
        if fixed is node:
            continue
        if node is root:
            root = fixed
        else:
            node.replace(fixed)
    assert isinstance(root, exp.Query)
    return root


def _fix(node: exp.Expr) -> exp.Expr:
    if isinstance(node, exp.TimestampDiff):
        return _fix_timestampdiff(node)
    if isinstance(node, exp.StrToUnix):
        return _fix_unix_timestamp(node)
    if isinstance(node, exp.DateTrunc):
        return _fix_trunc(node)
    if isinstance(node, exp.TimestampTrunc):
        return _fix_date_trunc_unit(node)
    if isinstance(node, exp.JSONExtract) and node.args.get("variant_extract"):
        return _fix_colon_path(node)
    if isinstance(node, (exp.Div, exp.IntDiv, exp.Mod)):
        return _fix_division(node)
    return fix(node)


# ------------------------------------------------------------------ TIMESTAMPDIFF


def _fix_timestampdiff(node: exp.TimestampDiff) -> exp.Expr:
    """TIMESTAMPDIFF(unit, start, end) -> whole elapsed units, as Spark computes them.

    Spark uses java.time `ChronoUnit.between` on the session-local date-times. For time
    units and DAY/WEEK that is DuckDB's date_sub (complete units, truncated toward zero).
    For MONTH/QUARTER/YEAR Java compares (month index * 32 + day of month) after moving
    the end date one day towards the start when its time of day has not been reached
    (Jan 31 -> Feb 28 is 0 months), which date_sub does not (it counts that as 1).
    """
    unit = node.unit.name.upper() if node.unit else ""
    if unit not in _TIMESTAMPDIFF_UNITS:
        return node
    start, end = _as_timestamp(node.expression), _as_timestamp(node.this)
    if unit in _MONTHS_PER_UNIT:
        return _java_months_between(start, end, _MONTHS_PER_UNIT[unit])
    return exp.Anonymous(
        this="DATE_SUB", expressions=[exp.Literal.string(unit.lower()), start, end]
    )


_MONTHS_PER_UNIT = {"MONTH": 1, "QUARTER": 3, "YEAR": 12}
_MONTHS_TEMPLATE = """CAST(TRUNC(TRUNC((
      (YEAR(__ed) * 12 + MONTH(__ed)) * 32 + DAY(__ed)
    - ((YEAR(CAST(__s AS DATE)) * 12 + MONTH(CAST(__s AS DATE))) * 32 + DAY(CAST(__s AS DATE)))
  ) / 32) / __k) AS BIGINT)"""
_END_DATE_TEMPLATE = """CASE
  WHEN CAST(__e AS DATE) > CAST(__s AS DATE) AND CAST(CAST(__e AS TIMESTAMP) AS TIME) < CAST(CAST(__s AS TIMESTAMP) AS TIME)
    THEN CAST(__e AS DATE) - 1
  WHEN CAST(__e AS DATE) < CAST(__s AS DATE) AND CAST(CAST(__e AS TIMESTAMP) AS TIME) > CAST(CAST(__s AS TIMESTAMP) AS TIME)
    THEN CAST(__e AS DATE) + 1
  ELSE CAST(__e AS DATE)
END"""

_END_DATE_TREE = sqlglot.parse_one(_END_DATE_TEMPLATE, read=_TARGET)
_MONTHS_TREE = sqlglot.parse_one(_MONTHS_TEMPLATE, read=_TARGET)


def _java_months_between(start: exp.Expr, end: exp.Expr, months_per_unit: int) -> exp.Expr:
    """ChronoUnit.MONTHS.between(start, end) // months_per_unit, as a DuckDB expression."""
    values: dict[str, exp.Expr] = {
        "__s": start,
        "__e": end,
        "__k": exp.Literal.number(months_per_unit),
    }
    values["__ed"] = _substitute(_END_DATE_TREE.copy(), values)
    return _substitute(_MONTHS_TREE.copy(), values)


def _substitute(template: exp.Expr, values: dict[str, exp.Expr]) -> exp.Expr:
    """Replace the template's placeholder columns (__s, __e, ...) with copies of `values`."""
    for col in list(template.find_all(exp.Column)):
        if col.name in values and not col.table:
            col.replace(values[col.name].copy())
    return template


def _as_timestamp(e: exp.Expr) -> exp.Expr:
    """CAST(e AS TIMESTAMPTZ): a Databricks TIMESTAMP is an instant; dates become UTC midnight."""
    return exp.cast(e.copy(), exp.DataType.build("TIMESTAMPTZ"))


# ------------------------------------------------------------------ UNIX_TIMESTAMP


def _default_unix_format() -> str:
    probe = _SOURCE.parse("SELECT UNIX_TIMESTAMP(x)")[0]
    assert probe is not None
    node = probe.find(exp.StrToUnix)
    assert node is not None
    return node.args["format"].name


_DEFAULT_UNIX_FORMAT = _default_unix_format()


def _fix_unix_timestamp(node: exp.StrToUnix) -> exp.Expr:
    """UNIX_TIMESTAMP(x) -> CAST(FLOOR(EPOCH(CAST(x AS TIMESTAMPTZ))) AS BIGINT)."""
    fmt = node.args.get("format")
    if fmt is None or fmt.name == _DEFAULT_UNIX_FORMAT:
        seconds: exp.Expr = exp.Anonymous(this="EPOCH", expressions=[_as_timestamp(node.this)])
    else:
        seconds = node.copy()  # EPOCH(STRPTIME(x, fmt)) from sqlglot
    return exp.cast(exp.Floor(this=seconds), exp.DataType.build("BIGINT"))


# ------------------------------------------------------------------ TRUNC / DATE_TRUNC


def _fix_trunc(node: exp.DateTrunc) -> exp.Expr:
    """TRUNC(x, fmt) -> CAST(DATE_TRUNC('part', CAST(x AS TIMESTAMPTZ)) AS DATE), or NULL."""
    unit = node.args.get("unit")
    if not isinstance(unit, exp.Literal | exp.Var):
        return node
    part = _TRUNC_UNITS.get(unit.name.upper())
    if part is None:
        return exp.cast(exp.Null(), exp.DataType.build("DATE"))
    truncated = exp.Anonymous(
        this="DATE_TRUNC", expressions=[exp.Literal.string(part), _as_timestamp(node.this)]
    )
    return exp.cast(truncated, exp.DataType.build("DATE"))


def _fix_date_trunc_unit(node: exp.TimestampTrunc) -> exp.Expr:
    """DATE_TRUNC('MM', ts) -> DATE_TRUNC('MONTH', ts): Spark spellings DuckDB lacks."""
    unit = node.args.get("unit")
    if isinstance(unit, exp.Var | exp.Literal) and unit.name.upper() in _DATE_TRUNC_UNITS:
        fixed = node.copy()
        fixed.set("unit", exp.var(_DATE_TRUNC_UNITS[unit.name.upper()]))
        return fixed
    return node


# ------------------------------------------------------------------ col:path


def _fix_colon_path(node: exp.JSONExtract) -> exp.Expr:
    """col:a.b -> JSON_EXTRACT_STRING(col, '$.a.b') (a STRING, like get_json_object)."""
    path = node.expression
    rendered = path.sql(dialect=_TARGET)  # a quoted DuckDB string literal: '$.a.b'
    literal = sqlglot.parse_one(rendered, read=_TARGET)
    path_text = literal.name if isinstance(literal, exp.Literal) and literal.is_string else ""
    if not path_text.startswith("$"):
        return node
    return exp.Anonymous(
        this="JSON_EXTRACT_STRING", expressions=[node.this, exp.Literal.string(path_text)]
    )


# ------------------------------------------------------------------ division by zero


def _fix_division(node: exp.Div | exp.IntDiv | exp.Mod) -> exp.Expr:
    """a / d -> a / CASE WHEN d = 0 THEN ERROR('[DIVIDE_BY_ZERO] ...') ELSE d END."""
    if isinstance(node, exp.Div) and node.args.get("safe"):
        return node
    divisor = node.expression
    if divisor.is_number and float(divisor.to_py()) != 0:
        return node
    message = REMAINDER_BY_ZERO_MESSAGE if isinstance(node, exp.Mod) else DIVIDE_BY_ZERO_MESSAGE
    guarded = (
        exp.Case()
        .when(
            exp.EQ(this=divisor.copy(), expression=exp.Literal.number(0)),
            exp.Anonymous(this="ERROR", expressions=[exp.Literal.string(message)]),
        )
        .else_(divisor.copy())
    )
    fixed = node.copy()
    fixed.set("expression", guarded)
    return fixed
