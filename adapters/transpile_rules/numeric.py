"""Numeric rules: division by zero, decimal averages, exact percentiles, casts and
Spark's named numeric helpers on DuckDB."""

from __future__ import annotations

import re

from sqlglot import exp

from adapters.embedded_refusals import EmbeddedUnsupported
from adapters.transpile_rules.build import (
    INTEGER_TYPES,
    double,
    fn,
    is_fraction,
    is_text,
    is_timestamp,
)

DIVIDE_BY_ZERO_MESSAGE = "[DIVIDE_BY_ZERO] Division by zero"
REMAINDER_BY_ZERO_MESSAGE = "[REMAINDER_BY_ZERO] Remainder by zero"


def division(node: exp.Expr) -> exp.Expr:
    """Division by zero raises in Databricks (ANSI: [DIVIDE_BY_ZERO] for `/` and `div`,
    [REMAINDER_BY_ZERO] for `%`); DuckDB gives NULL or inf: a / d -> a / CASE WHEN d = 0
    THEN ERROR('[DIVIDE_BY_ZERO] ...') ELSE d END (a NULL divisor still gives NULL).
    Non-zero numeric literal divisors are left alone."""
    if not isinstance(node, exp.Div | exp.IntDiv | exp.Mod):
        return node
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


def count_if(node: exp.Expr) -> exp.Expr:
    """count_if(x) counts the true rows, 0 over no rows (DuckDB's COUNT_IF gives NULL)."""
    if not isinstance(node, exp.CountIf):
        return node
    return exp.Count(this=exp.Case().when(node.this.copy(), exp.Literal.number(1)))


def collect_empty(node: exp.Expr) -> exp.Expr:
    """collect_list/collect_set over no rows (or only NULLs) is an empty array, not NULL."""
    inner = node
    while isinstance(inner, exp.Window | exp.Filter):
        inner = inner.this
    if not isinstance(inner, exp.ArrayAgg | exp.ArrayUniqueAgg) or isinstance(
        node.parent, exp.Window | exp.Filter
    ):
        return node
    return exp.Coalesce(this=node.copy(), expressions=[exp.Array(expressions=[])])


def approximate_distinct(node: exp.Expr) -> exp.Expr:
    """approx_count_distinct(x) -> count(DISTINCT x): exact, so within Spark's documented
    relative error (DuckDB's own HyperLogLog is not bound by it)."""
    if not isinstance(node, exp.ApproxDistinct):
        return node
    return exp.Count(this=exp.Distinct(expressions=[node.this.copy()]))


def percentiles(node: exp.Expr) -> exp.Expr:
    """percentile / median / percentile_cont: exact, interpolated, as DOUBLE (DuckDB's
    QUANTILE is discrete and its MEDIAN keeps a decimal's scale); percentile_approx: the
    value of rank ceil(p * n), which is what Spark's estimate is on demo-sized data."""
    if type(node) is exp.Quantile:  # not ApproxQuantile, a subclass
        return fn("QUANTILE_CONT", double(node.this), node.args["quantile"])
    if isinstance(node, exp.Median):
        return fn("QUANTILE_CONT", double(node.this), exp.Literal.number(0.5))
    if isinstance(node, exp.WithinGroup) and isinstance(node.this, exp.PercentileCont):
        order = node.expression
        ordered = (
            order.expressions[0]
            if isinstance(order, exp.Order) and len(order.expressions) == 1
            else None
        )
        if not isinstance(ordered, exp.Ordered):
            raise EmbeddedUnsupported("percentile_cont() over several ORDER BY keys")
        p = node.this.this
        if ordered.args.get("desc"):
            p = exp.Sub(this=exp.Literal.number(1), expression=p.copy())
        return fn("QUANTILE_CONT", double(ordered.this), p)
    if isinstance(node, exp.ApproxQuantile):
        x, p = node.this, node.args["quantile"]
        if isinstance(p, exp.Array):
            raise EmbeddedUnsupported("percentile_approx() with an array of percentages")
        values = exp.Filter(
            this=fn("LIST", x.copy()),
            expression=exp.Where(this=exp.Not(this=exp.Is(this=x.copy(), expression=exp.Null()))),
        )
        rank = exp.cast(
            exp.Greatest(
                this=exp.Ceil(this=exp.Mul(this=p.copy(), expression=exp.Count(this=x.copy()))),
                expressions=[exp.Literal.number(1)],
            ),
            exp.DataType.build("BIGINT"),
        )
        return fn("LIST_EXTRACT", fn("LIST_SORT", values), rank)
    return node


def decimal_average(node: exp.Expr) -> exp.Expr:
    """avg(DECIMAL(p, s)) is a DECIMAL(p + 4, s + 4) in Databricks (DuckDB: a DOUBLE)."""
    inner = node
    while isinstance(inner, exp.Window | exp.Filter):  # the cast goes around AVG(...) FILTER/OVER
        inner = inner.this
    if not isinstance(inner, exp.Avg) or isinstance(node.parent, exp.Window | exp.Filter):
        return node
    t = inner.this.type
    if t is None or not t.is_type(exp.DataType.Type.DECIMAL) or len(t.expressions) != 2:
        if inner.this.meta.get("family") == "decimal":  # typed by the rule, not by sqlglot
            raise EmbeddedUnsupported("avg() over a DECIMAL of unknown precision")
        return node
    p, s = (int(e.name) for e in t.expressions)
    typ = exp.DataType.build(f"DECIMAL({min(38, p + 4)}, {min(38, s + 4)})")
    return exp.cast(node.copy(), typ)


def casts(node: exp.Expr) -> exp.Expr:
    """CAST(fraction AS INT) truncates toward zero in Databricks (DuckDB rounds);
    CAST(timestamp AS STRING) has no offset; size(map) is its entry count."""
    if isinstance(node, exp.Cast) and node.to.this in INTEGER_TYPES and is_fraction(node.this):
        fixed = node.copy()
        fixed.set("this", exp.Trunc(this=node.this.copy()))
        return fixed
    if (
        isinstance(node, exp.Cast)
        and node.to.is_type(*exp.DataType.TEXT_TYPES)
        and is_timestamp(node.this)
    ):
        inner = exp.cast(node.this.copy(), exp.DataType.build("TIMESTAMP"))
        return exp.cast(inner, exp.DataType.build("VARCHAR"))
    if isinstance(node, exp.ArraySize) and isinstance(node.this, exp.VarMap | exp.Map):
        return fn("CARDINALITY", node.this)
    return node


_ISO_DATE = r"\s*[0-9]{4}-[0-9]{2}-[0-9]{2}\s*"

_ISO_TIMESTAMP = (
    r"\s*[0-9]{4}-[0-9]{2}-[0-9]{2}([ T][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?)?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})?\s*"
)

_INTEGER_TEXT = r"\s*[+-]?[0-9]+\s*"


def _checked_text(value: exp.Expr, pattern: str, cast: exp.Expr, *, safe: bool) -> exp.Expr:
    """CASE WHEN value matches `pattern` THEN cast ELSE ERROR(...) (NULL if `safe`) END."""
    bad: exp.Expr = (
        exp.Null()
        if safe
        else fn("ERROR", exp.Literal.string("[CAST_INVALID_INPUT] the value cannot be cast"))
    )
    return (
        exp.Case()
        .when(exp.Is(this=value.copy(), expression=exp.Null()), exp.Null())
        .when(fn("REGEXP_FULL_MATCH", value.copy(), exp.Literal.string(pattern)), cast)
        .else_(bad)
    )


def text_casts(node: exp.Expr) -> exp.Expr:
    """CAST(string AS DATE/TIMESTAMP/integer): Spark (ANSI) accepts ISO text and whole
    numbers only and raises otherwise (TRY_CAST gives NULL); DuckDB also reads other
    spellings ('2024/02/29') and rounds '3.7' to 4."""
    if not isinstance(node, exp.Cast) or not is_text(node.this):
        return node
    safe = isinstance(node, exp.TryCast)
    to = node.to
    if to.is_type(exp.DataType.Type.DATE):
        pattern = _ISO_DATE
    elif to.is_type(*exp.DataType.TEMPORAL_TYPES):
        pattern = _ISO_TIMESTAMP
    elif to.this in INTEGER_TYPES:
        pattern = _INTEGER_TEXT
    else:
        return node
    literal = node.this
    if isinstance(literal, exp.Literal) and re.fullmatch(pattern, literal.name):
        return node  # checked here: the text is one both engines read alike
    trimmed = exp.Trim(this=node.this.copy())
    cast = exp.TryCast(this=trimmed, to=to.copy()) if safe else exp.cast(trimmed, to.copy())
    return _checked_text(node.this, pattern, cast, safe=safe)


def named_functions(node: exp.Expr) -> exp.Expr:
    """every/some are bool_and/bool_or; format_number(x, d) is '#,##0.<d digits>' rounded
    half-even."""
    if isinstance(node, exp.Anonymous):
        name = node.name.lower()
        args = node.expressions
        if name in {"every", "some"}:
            return fn("BOOL_AND" if name == "every" else "BOOL_OR", *args)
        if name in {"isnull", "isnotnull"} and len(args) == 1:
            test = exp.Is(this=args[0], expression=exp.Null())
            return exp.Paren(this=test if name == "isnull" else exp.Not(this=test))
        if name == "e" and not args:
            return exp.Exp(this=exp.Literal.number(1))
        if name == "bround" and 1 <= len(args) <= 2:
            return fn("ROUND_EVEN", *args, *([] if len(args) == 2 else [exp.Literal.number(0)]))
        if name == "pmod" and len(args) == 2:  # the non-negative remainder (a % b is ANSI-checked)
            a, b = args
            inner = exp.Mod(
                this=exp.Paren(
                    this=exp.Add(this=exp.Mod(this=a, expression=b), expression=b.copy())
                ),
                expression=b.copy(),
            )
            return exp.Paren(this=inner)
        if name == "format_number":
            x, d = [*node.expressions, None][:2]
            if not (
                isinstance(d, exp.Literal)
                and not d.is_string
                and d.is_int
                and len(node.expressions) == 2
            ):
                raise EmbeddedUnsupported("format_number() with a pattern or computed scale")
            digits = int(d.to_py())
            rounded = fn("ROUND_EVEN", double(x), exp.Literal.number(digits))
            return fn("FORMAT", exp.Literal.string("{:,." + str(digits) + "f}"), rounded)
    return node


def max_by_nulls(node: exp.Expr) -> exp.Expr:
    """max_by/min_by(x, key): x at the row of the greatest/least non-NULL key, even when x
    is NULL there (DuckDB's ARG_MAX skips rows whose x is NULL; ARG_MAX_NULL does not)."""
    if isinstance(node, exp.ArgMax | exp.ArgMin) and node.expression is not None:
        name = "ARG_MAX_NULL" if isinstance(node, exp.ArgMax) else "ARG_MIN_NULL"
        return fn(name, node.this.copy(), node.expression.copy())
    return node
