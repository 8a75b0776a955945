"""More Databricks -> DuckDB fixes: each makes DuckDB give Databricks' answer (proven on
Spark by the fidelity suite, tests/test_fidelity.py). What has no faithful translation is
refused instead (adapters/embedded_refusals.py)."""

from __future__ import annotations

import json
import re

import sqlglot
from sqlglot import exp

from adapters.embedded_refusals import EmbeddedUnsupported
from adapters.transpile_types import INTEGER_TYPES, kind_of

_TARGET = "duckdb"


# ------------------------------------------------------------------ fixes


def _date(e: exp.Expr) -> exp.Expr:
    return exp.cast(e, exp.DataType.build("DATE"))


def _tstz(e: exp.Expr) -> exp.Expr:
    return exp.cast(e, exp.DataType.build("TIMESTAMPTZ"))


def _fn(name: str, *args: exp.Expr) -> exp.Expr:
    return exp.Anonymous(this=name, expressions=list(args))


def fix_day_of_week(node: exp.Expr) -> exp.Expr:
    """dayofweek / extract(DOW): 1 = Sunday .. 7 = Saturday; weekday(): 0 = Monday ..
    6 = Sunday; extract(DAYOFWEEK_ISO): 1 = Monday .. 7 (DuckDB counts 0 = Sunday)."""
    if isinstance(node, exp.DayOfWeek):
        return exp.Paren(
            this=exp.Add(this=_fn("DAYOFWEEK", node.this), expression=exp.Literal.number(1))
        )
    if isinstance(node, exp.Anonymous) and node.name.lower() == "weekday":
        return exp.Paren(
            this=exp.Sub(this=_fn("ISODOW", *node.expressions), expression=exp.Literal.number(1))
        )
    if isinstance(node, exp.Anonymous) and node.name.lower() in {"date_part", "datepart"}:
        field = node.expressions[0] if node.expressions else None
        if isinstance(field, exp.Literal) and field.is_string and len(node.expressions) == 2:
            return fix_day_of_week(
                exp.Extract(this=exp.var(field.name.upper()), expression=node.expressions[1])
            )
    if isinstance(node, exp.Extract):
        unit = node.name.upper()
        if unit in {"DOW", "DAYOFWEEK"}:
            return exp.Paren(
                this=exp.Add(
                    this=_fn("DAYOFWEEK", node.expression), expression=exp.Literal.number(1)
                )
            )
        if unit in {"DOW_ISO", "DAYOFWEEK_ISO"}:
            return _fn("ISODOW", node.expression)
        if unit in {"SECOND", "SECONDS", "S"}:
            raise EmbeddedUnsupported("extract(SECOND ...) with its fraction")
    return node


def fix_date_results(node: exp.Expr) -> exp.Expr:
    """date_add/date_sub(x, n) and add_months(x, n) return a DATE in Databricks."""
    if isinstance(node, exp.TsOrDsAdd) and (node.unit is None or node.unit.name.upper() == "DAY"):
        return _date(node)
    if isinstance(node, exp.AddMonths):
        return _date(
            exp.Add(
                this=_date(node.this),
                expression=exp.Interval(this=node.expression, unit=exp.var("MONTH")),
            )
        )
    return node


_MONTHS_BETWEEN = sqlglot.parse_one(
    """CASE WHEN __r THEN ROUND(__v, 8) ELSE __v END""", read=_TARGET
)
_MONTHS_VALUE = sqlglot.parse_one(
    """CASE
      WHEN DAY(__a) = DAY(__b) OR (__a_d = LAST_DAY(__a_d) AND __b_d = LAST_DAY(__b_d))
        THEN CAST((YEAR(__a) * 12 + MONTH(__a)) - (YEAR(__b) * 12 + MONTH(__b)) AS DOUBLE)
      ELSE (YEAR(__a) * 12 + MONTH(__a)) - (YEAR(__b) * 12 + MONTH(__b))
        + ((DAY(__a) * 86400 + EPOCH(__a) - EPOCH(DATE_TRUNC('day', __a)))
         - (DAY(__b) * 86400 + EPOCH(__b) - EPOCH(DATE_TRUNC('day', __b)))) / (31.0 * 86400)
    END""",
    read=_TARGET,
)


def fix_months_between(node: exp.Expr) -> exp.Expr:
    """months_between(a, b[, roundOff]): whole months when the days of month match (or
    both are month ends), else the day-and-time difference over 31 days; rounded to 8
    digits unless roundOff is false (Spark's definition, time of day included)."""
    if not isinstance(node, exp.MonthsBetween):
        return node
    a, b = _tstz(node.this.copy()), _tstz(node.expression.copy())
    round_off = node.args.get("roundoff")
    values = {"__a": a, "__b": b, "__a_d": _date(a.copy()), "__b_d": _date(b.copy())}
    value = _substitute(_MONTHS_VALUE.copy(), values)
    rounded = round_off is None or not (isinstance(round_off, exp.Boolean) and not round_off.this)
    return exp.Round(this=value, decimals=exp.Literal.number(8)) if rounded else value


def _substitute(template: exp.Expr, values: dict[str, exp.Expr]) -> exp.Expr:
    for col in list(template.find_all(exp.Column)):
        if col.name in values and not col.table:
            col.replace(values[col.name].copy())
    return template


def fix_percentiles(node: exp.Expr) -> exp.Expr:
    """percentile / median / percentile_cont: exact, interpolated, as DOUBLE (DuckDB's
    QUANTILE is discrete and its MEDIAN keeps a decimal's scale); percentile_approx: the
    value of rank ceil(p * n), which is what Spark's estimate is on demo-sized data."""
    if type(node) is exp.Quantile:  # not ApproxQuantile, a subclass
        return _fn("QUANTILE_CONT", _double(node.this), node.args["quantile"])
    if isinstance(node, exp.Median):
        return _fn("QUANTILE_CONT", _double(node.this), exp.Literal.number(0.5))
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
        return _fn("QUANTILE_CONT", _double(ordered.this), p)
    if isinstance(node, exp.ApproxQuantile):
        x, p = node.this, node.args["quantile"]
        if isinstance(p, exp.Array):
            raise EmbeddedUnsupported("percentile_approx() with an array of percentages")
        values = exp.Filter(
            this=_fn("LIST", x.copy()),
            expression=exp.Where(this=exp.Not(this=exp.Is(this=x.copy(), expression=exp.Null()))),
        )
        rank = exp.cast(
            exp.Greatest(
                this=exp.Ceil(this=exp.Mul(this=p.copy(), expression=exp.Count(this=x.copy()))),
                expressions=[exp.Literal.number(1)],
            ),
            exp.DataType.build("BIGINT"),
        )
        return _fn("LIST_EXTRACT", _fn("LIST_SORT", values), rank)
    return node


def _double(e: exp.Expr) -> exp.Expr:
    return exp.cast(e.copy(), exp.DataType.build("DOUBLE"))


def fix_substring(node: exp.Expr) -> exp.Expr:
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


def fix_casts(node: exp.Expr) -> exp.Expr:
    """CAST(fraction AS INT) truncates toward zero in Databricks (DuckDB rounds);
    CAST(timestamp AS STRING) has no offset; size(map) is its entry count."""
    if (
        isinstance(node, exp.Cast)
        and node.to.this in INTEGER_TYPES
        and kind_of(node.this) == "fraction"
    ):
        fixed = node.copy()
        fixed.set("this", exp.Trunc(this=node.this.copy()))
        return fixed
    if (
        isinstance(node, exp.Cast)
        and node.to.is_type(*exp.DataType.TEXT_TYPES)
        and kind_of(node.this) == "timestamp"
    ):
        inner = exp.cast(node.this.copy(), exp.DataType.build("TIMESTAMP"))
        return exp.cast(inner, exp.DataType.build("VARCHAR"))
    if isinstance(node, exp.ArraySize) and isinstance(node.this, exp.VarMap | exp.Map):
        return _fn("CARDINALITY", node.this)
    return node


def fix_time_zones(node: exp.Expr) -> exp.Expr:
    """from_utc_timestamp(ts, tz): the UTC wall time shown in tz; to_utc_timestamp: the
    reverse; both are instants (TIMESTAMPTZ here). make_timestamp / to_timestamp(s, fmt)
    are instants too (DuckDB gives a zone-less TIMESTAMP)."""
    utc = exp.Literal.string("UTC")
    if isinstance(node, exp.AtTimeZone):  # from_utc_timestamp(ts, tz)
        return _fn("TIMEZONE", utc, _fn("TIMEZONE", node.args["zone"], _tstz(node.this)))
    if isinstance(node, exp.FromTimeZone):  # to_utc_timestamp(ts, tz)
        return _fn("TIMEZONE", node.args["zone"], _fn("TIMEZONE", utc, _tstz(node.this)))
    if isinstance(node, exp.TimestampFromParts | exp.StrToTime):
        return _tstz(node)
    return node


def fix_named_functions(node: exp.Expr) -> exp.Expr:
    """every/some are bool_and/bool_or; format_number(x, d) is '#,##0.<d digits>' rounded
    half-even; from_json(s, 'a STRING, ...') takes a DDL schema string."""
    if isinstance(node, exp.Anonymous):
        name = node.name.lower()
        args = node.expressions
        if name in {"every", "some"}:
            return _fn("BOOL_AND" if name == "every" else "BOOL_OR", *args)
        if name in {"isnull", "isnotnull"} and len(args) == 1:
            test = exp.Is(this=args[0], expression=exp.Null())
            return exp.Paren(this=test if name == "isnull" else exp.Not(this=test))
        if name == "e" and not args:
            return exp.Exp(this=exp.Literal.number(1))
        if name == "bround" and 1 <= len(args) <= 2:
            return _fn("ROUND_EVEN", *args, *([] if len(args) == 2 else [exp.Literal.number(0)]))
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
            rounded = _fn("ROUND_EVEN", _double(x), exp.Literal.number(digits))
            return _fn("FORMAT", exp.Literal.string("{:,." + str(digits) + "f}"), rounded)
    if isinstance(node, exp.FromJson):
        schema = node.expression
        if not (isinstance(schema, exp.Literal) and schema.is_string) or node.args.get("options"):
            raise EmbeddedUnsupported("from_json() without a literal schema")
        structure = _json_structure(schema.name)
        return _fn("FROM_JSON", node.this, exp.Literal.string(json.dumps(structure)))
    return node


_SCALARS = {
    "STRING": "VARCHAR",
    "INT": "INTEGER",
    "INTEGER": "INTEGER",
    "BIGINT": "BIGINT",
    "DOUBLE": "DOUBLE",
    "BOOLEAN": "BOOLEAN",
    "DATE": "DATE",
}
# the approximate functions: on large groups their digits can differ from Databricks'
APPROXIMATE = ("approx_count_distinct()", "percentile_approx() / approx_percentile()")


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


_WINDOW_DURATION = re.compile(r"^\s*(\d+)\s+(second|minute|hour|day|week)s?\s*$", re.IGNORECASE)


def fix_time_window(node: exp.Expr) -> exp.Expr:
    """window(ts, 'N unit') -> {start, end}: buckets aligned to the epoch, as Spark's."""
    if not (isinstance(node, exp.Anonymous) and node.name.lower() == "window"):
        return node
    args = node.expressions
    duration = args[1] if len(args) == 2 else None
    match = (
        _WINDOW_DURATION.match(duration.name)
        if isinstance(duration, exp.Literal) and duration.is_string
        else None
    )
    if match is None:
        raise EmbeddedUnsupported("window() with a slide, a start offset or a computed duration")
    interval = exp.Interval(
        this=exp.Literal.string(match.group(1)), unit=exp.var(match.group(2).upper())
    )
    origin = exp.cast(
        exp.Literal.string("1970-01-01 00:00:00+00"), exp.DataType.build("TIMESTAMPTZ")
    )
    start = _fn("TIME_BUCKET", interval, _tstz(args[0]), origin)
    return _fn(
        "STRUCT_PACK",
        exp.PropertyEQ(this=exp.to_identifier("start"), expression=start),
        exp.PropertyEQ(
            this=exp.to_identifier("end"),
            expression=exp.Add(this=start.copy(), expression=interval.copy()),
        ),
    )


FIXES = (
    fix_day_of_week,
    fix_date_results,
    fix_months_between,
    fix_percentiles,
    fix_substring,
    fix_casts,
    fix_time_zones,
    fix_named_functions,
    fix_time_window,
)


def fix(node: exp.Expr) -> exp.Expr:
    for f in FIXES:
        fixed = f(node)
        if fixed is not node:
            return fixed
    return node
