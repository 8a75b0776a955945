"""Date and time rules: Databricks' meaning of date arithmetic, truncation, differences,
week days, month spans, time zones and time windows on DuckDB."""

from __future__ import annotations

import re

import sqlglot
from sqlglot import exp

from adapters.embedded_refusals import EmbeddedUnsupported
from adapters.transpile_rules.build import SOURCE, TARGET, date, fn, substitute, tstz

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


def timestampdiff(node: exp.Expr) -> exp.Expr:
    """TIMESTAMPDIFF(unit, start, end) -> whole elapsed units, as Spark computes them.

    Spark uses java.time `ChronoUnit.between` on the session-local date-times. For time
    units and DAY/WEEK that is DuckDB's date_sub (complete units, truncated toward zero).
    For MONTH/QUARTER/YEAR Java compares (month index * 32 + day of month) after moving
    the end date one day towards the start when its time of day has not been reached
    (Jan 31 -> Feb 28 is 0 months), which date_sub does not (it counts that as 1).
    """
    if not isinstance(node, exp.TimestampDiff):
        return node
    unit = node.unit.name.upper() if node.unit else ""
    if unit not in _TIMESTAMPDIFF_UNITS:
        return node
    start, end = tstz(node.expression), tstz(node.this)
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

_END_DATE_TREE = sqlglot.parse_one(_END_DATE_TEMPLATE, read=TARGET)

_MONTHS_TREE = sqlglot.parse_one(_MONTHS_TEMPLATE, read=TARGET)


def _java_months_between(start: exp.Expr, end: exp.Expr, months_per_unit: int) -> exp.Expr:
    """ChronoUnit.MONTHS.between(start, end) // months_per_unit, as a DuckDB expression."""
    values: dict[str, exp.Expr] = {
        "__s": start,
        "__e": end,
        "__k": exp.Literal.number(months_per_unit),
    }
    values["__ed"] = substitute(_END_DATE_TREE.copy(), values)
    return substitute(_MONTHS_TREE.copy(), values)


def _default_unix_format() -> str:
    probe = SOURCE.parse("SELECT UNIX_TIMESTAMP(x)")[0]
    assert probe is not None
    node = probe.find(exp.StrToUnix)
    assert node is not None
    return node.args["format"].name


_DEFAULT_UNIX_FORMAT = _default_unix_format()


def unix_timestamp(node: exp.Expr) -> exp.Expr:
    """UNIX_TIMESTAMP(x) -> CAST(FLOOR(EPOCH(CAST(x AS TIMESTAMPTZ))) AS BIGINT)."""
    if not isinstance(node, exp.StrToUnix):
        return node
    fmt = node.args.get("format")
    if fmt is None or fmt.name == _DEFAULT_UNIX_FORMAT:
        seconds: exp.Expr = exp.Anonymous(this="EPOCH", expressions=[tstz(node.this)])
    else:
        seconds = node.copy()  # EPOCH(STRPTIME(x, fmt)) from sqlglot
    return exp.cast(exp.Floor(this=seconds), exp.DataType.build("BIGINT"))


def trunc(node: exp.Expr) -> exp.Expr:
    """TRUNC(x, fmt) -> CAST(DATE_TRUNC('part', CAST(x AS TIMESTAMPTZ)) AS DATE), or NULL."""
    if not isinstance(node, exp.DateTrunc):
        return node
    unit = node.args.get("unit")
    if not isinstance(unit, exp.Literal | exp.Var):
        return node
    part = _TRUNC_UNITS.get(unit.name.upper())
    if part is None:
        return exp.cast(exp.Null(), exp.DataType.build("DATE"))
    truncated = exp.Anonymous(
        this="DATE_TRUNC", expressions=[exp.Literal.string(part), tstz(node.this)]
    )
    return exp.cast(truncated, exp.DataType.build("DATE"))


def date_trunc_unit(node: exp.Expr) -> exp.Expr:
    """DATE_TRUNC('MM', ts) -> DATE_TRUNC('MONTH', ts): Spark spellings DuckDB lacks."""
    if not isinstance(node, exp.TimestampTrunc):
        return node
    unit = node.args.get("unit")
    if isinstance(unit, exp.Var | exp.Literal) and unit.name.upper() in _DATE_TRUNC_UNITS:
        fixed = node.copy()
        fixed.set("unit", exp.var(_DATE_TRUNC_UNITS[unit.name.upper()]))
        return fixed
    return node


def day_of_week(node: exp.Expr) -> exp.Expr:
    """dayofweek / extract(DOW): 1 = Sunday .. 7 = Saturday; weekday(): 0 = Monday ..
    6 = Sunday; extract(DAYOFWEEK_ISO): 1 = Monday .. 7 (DuckDB counts 0 = Sunday); any
    other extract(field ...) is an INT in Databricks."""
    if isinstance(node, exp.DayOfWeek):
        return exp.Paren(
            this=exp.Add(this=fn("DAYOFWEEK", node.this), expression=exp.Literal.number(1))
        )
    if isinstance(node, exp.Anonymous) and node.name.lower() == "weekday":
        return exp.Paren(
            this=exp.Sub(this=fn("ISODOW", *node.expressions), expression=exp.Literal.number(1))
        )
    if isinstance(node, exp.Anonymous) and node.name.lower() in {"date_part", "datepart"}:
        field = node.expressions[0] if node.expressions else None
        if isinstance(field, exp.Literal) and field.is_string and len(node.expressions) == 2:
            return day_of_week(
                exp.Extract(this=exp.var(field.name.upper()), expression=node.expressions[1])
            )
    if isinstance(node, exp.Extract):
        unit = node.name.upper()
        if unit in {"DOW", "DAYOFWEEK"}:
            return exp.Paren(
                this=exp.Add(
                    this=fn("DAYOFWEEK", node.expression), expression=exp.Literal.number(1)
                )
            )
        if unit in {"DOW_ISO", "DAYOFWEEK_ISO"}:
            return fn("ISODOW", node.expression)
        if unit in {"SECOND", "SECONDS", "S"}:
            raise EmbeddedUnsupported("extract(SECOND ...) with its fraction")
        return exp.cast(node.copy(), exp.DataType.build("INT"))  # a whole-number field: INT
    return node


def date_results(node: exp.Expr) -> exp.Expr:
    """date_add/date_sub(x, n) and add_months(x, n) return a DATE in Databricks."""
    if isinstance(node, exp.TsOrDsAdd) and (node.unit is None or node.unit.name.upper() == "DAY"):
        return date(node)
    if isinstance(node, exp.AddMonths):
        return date(
            exp.Add(
                this=date(node.this),
                expression=exp.Interval(this=node.expression, unit=exp.var("MONTH")),
            )
        )
    return node


_MONTHS_VALUE = sqlglot.parse_one(
    """CASE
      WHEN DAY(__a) = DAY(__b) OR (__a_d = LAST_DAY(__a_d) AND __b_d = LAST_DAY(__b_d))
        THEN CAST((YEAR(__a) * 12 + MONTH(__a)) - (YEAR(__b) * 12 + MONTH(__b)) AS DOUBLE)
      ELSE (YEAR(__a) * 12 + MONTH(__a)) - (YEAR(__b) * 12 + MONTH(__b))
        + ((DAY(__a) * 86400 + EPOCH(__a) - EPOCH(DATE_TRUNC('day', __a)))
         - (DAY(__b) * 86400 + EPOCH(__b) - EPOCH(DATE_TRUNC('day', __b)))) / (31.0 * 86400)
    END""",
    read=TARGET,
)


def months_between(node: exp.Expr) -> exp.Expr:
    """months_between(a, b[, roundOff]): whole months when the days of month match (or
    both are month ends), else the day-and-time difference over 31 days; rounded to 8
    digits unless roundOff is false (Spark's definition, time of day included)."""
    if not isinstance(node, exp.MonthsBetween):
        return node
    a, b = tstz(node.this.copy()), tstz(node.expression.copy())
    round_off = node.args.get("roundoff")
    values = {"__a": a, "__b": b, "__a_d": date(a.copy()), "__b_d": date(b.copy())}
    value = substitute(_MONTHS_VALUE.copy(), values)
    rounded = round_off is None or not (isinstance(round_off, exp.Boolean) and not round_off.this)
    return exp.Round(this=value, decimals=exp.Literal.number(8)) if rounded else value


def time_zones(node: exp.Expr) -> exp.Expr:
    """from_utc_timestamp(ts, tz): the UTC wall time shown in tz; to_utc_timestamp: the
    reverse; both are instants (TIMESTAMPTZ here). make_timestamp / to_timestamp(s, fmt)
    are instants too (DuckDB gives a zone-less TIMESTAMP)."""
    utc = exp.Literal.string("UTC")
    if isinstance(node, exp.AtTimeZone):  # from_utc_timestamp(ts, tz)
        return fn("TIMEZONE", utc, fn("TIMEZONE", node.args["zone"], tstz(node.this)))
    if isinstance(node, exp.FromTimeZone):  # to_utc_timestamp(ts, tz)
        return fn("TIMEZONE", node.args["zone"], fn("TIMEZONE", utc, tstz(node.this)))
    if isinstance(node, exp.TimestampFromParts | exp.StrToTime):
        return tstz(node)
    return node


_WINDOW_DURATION = re.compile(r"^\s*(\d+)\s+(second|minute|hour|day|week)s?\s*$", re.IGNORECASE)


def time_window(node: exp.Expr) -> exp.Expr:
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
    start = fn("TIME_BUCKET", interval, tstz(args[0]), origin)
    return fn(
        "STRUCT_PACK",
        exp.PropertyEQ(this=exp.to_identifier("start"), expression=start),
        exp.PropertyEQ(
            this=exp.to_identifier("end"),
            expression=exp.Add(this=start.copy(), expression=interval.copy()),
        ),
    )
