"""The differential test's machinery: which constructs the embedded engine may run.

Candidates are the constructs (adapters/embedded_rule.py keys) of the fidelity corpus and
of every widget's compiled SQL. For each, sample values of each argument's type family
(NULLs, negatives, month ends, leap days, .5 ties, empty strings and arrays, NaN) are put
in its place, and the cases run on local Spark (ANSI on, UTC) and on the embedded DuckDB
warehouse through the production path (to_duckdb, the warehouse, json_safe rows). A key is
verified when every case agrees: the same value (or NULL), the same result type family, or
an error on both; and at least one case gives a non-NULL value. The result is
adapters/embedded_verified.json; `python -m tests.differential` (`make verified`) rewrites
it, the test compares it.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlglot import exp

from adapters.duckdb_warehouse import DuckDBWarehouse
from adapters.embedded_rule import (
    APPROXIMATE_NAMES,
    UNGATED,
    VERIFIED_PATH,
    Construct,
    VerifiedSet,
    constructs,
    type_family,
)
from adapters.lakehouse import TABLES
from adapters.transpile import parse_databricks
from domain.failures import WarehouseFailure
from domain.jsonsafe import json_safe

CORPUS = Path(__file__).parent / "fixtures" / "fidelity" / "corpus.sql"
MAX_CASES = 60
# constructs whose value depends on the clock: only their result type is compared
CLOCK = {"current_timestamp", "currentdate", "current_date", "now", "curdate", "currenttimestamp"}

# sample values per family, as Databricks SQL (the first is a typed NULL)
POOLS: dict[str, list[str]] = {
    "integer": ["CAST(NULL AS INT)", "0", "1", "-7", "12", "31", "3"],
    "decimal": [
        "CAST(NULL AS DECIMAL(12,2))",
        "CAST(2.50 AS DECIMAL(12,2))",
        "CAST(-2.50 AS DECIMAL(12,2))",
        "CAST(0.05 AS DECIMAL(12,2))",
        "CAST(1234567.45 AS DECIMAL(12,2))",
        "CAST(0 AS DECIMAL(12,2))",
        "0.5",
    ],
    "double": [
        "CAST(NULL AS DOUBLE)",
        "CAST(2.5 AS DOUBLE)",
        "CAST(-0.5 AS DOUBLE)",
        "CAST(0.1 AS DOUBLE)",
        "CAST(1e10 AS DOUBLE)",
        "CAST('NaN' AS DOUBLE)",
        "CAST(-3.75 AS DOUBLE)",
        "CAST(0.285 AS DOUBLE)",
        "CAST(2.675 AS DOUBLE)",
    ],
    "string": [
        "CAST(NULL AS STRING)",
        "''",
        "'abc'",
        "'Hello World'",
        "' pad '",
        "'42'",
        "'-3.7'",
        "'2024-02-29'",
        "'a,b,,c'",
        "'2024/02/29'",
        "'31/01/2026 13:45'",
        '\'{"damage": "dent", "carrier": {"n": 2}, "xs": [1, 2]}\'',
    ],
    "date": [
        "CAST(NULL AS DATE)",
        "DATE '2024-02-29'",
        "DATE '2026-01-31'",
        "DATE '2025-12-31'",
        "DATE '1969-12-31'",
        "DATE '2026-03-01'",
    ],
    "timestamp": [
        "CAST(NULL AS TIMESTAMP)",
        "TIMESTAMP '2024-02-29 23:59:59.5'",
        "TIMESTAMP '2026-01-31 00:00:00'",
        "TIMESTAMP '2025-12-31 12:34:56.789'",
        "TIMESTAMP '1970-01-01 00:00:00'",
        "TIMESTAMP '2026-03-29 01:30:00'",
    ],
    "boolean": ["CAST(NULL AS BOOLEAN)", "true", "false"],
    "null": ["NULL"],
}
_ELEMENT_TYPES = {
    "integer": "INT",
    "decimal": "DECIMAL(12,2)",
    "double": "DOUBLE",
    "string": "STRING",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "boolean": "BOOLEAN",
}
WINDOW_ONLY = (
    exp.RowNumber,
    exp.Rank,
    exp.DenseRank,
    exp.PercentRank,
    exp.CumeDist,
    exp.Ntile,
    exp.Lag,
    exp.Lead,
    exp.FirstValue,
    exp.LastValue,
    exp.NthValue,
)
_RANKING = (exp.Rank, exp.DenseRank, exp.PercentRank, exp.CumeDist)
_AGGREGATE_NAMES = {"every", "some", "try_sum", "try_avg"}


def pool(family: str) -> list[str] | None:
    """Sample values of `family`, or None when the test has none (the key stays unverified)."""
    if family in POOLS:
        return POOLS[family]
    if family.startswith("interval "):
        unit = family.split(" ", 1)[1].upper()
        return [f"INTERVAL {n} {unit}" for n in (1, -2, 13)]
    if family.startswith("array<") and family[6:-1] in _ELEMENT_TYPES:
        element = family[6:-1]
        typ = _ELEMENT_TYPES[element]
        values = POOLS[element][1:]
        return [
            f"CAST(NULL AS ARRAY<{typ}>)",
            f"CAST(array() AS ARRAY<{typ}>)",
            f"array({', '.join(values[:3])})",
            f"array({values[2]}, {POOLS[element][0]}, {values[0]})",
            f"array({values[-1]})",
        ]
    return None


# ------------------------------------------------------------------ candidates


def corpus_sql() -> list[str]:
    out = []
    for block in CORPUS.read_text().split("\n\n"):
        lines = [ln for ln in block.strip().splitlines() if not ln.startswith("#")]
        if lines and any(ln.startswith("# id:") for ln in block.strip().splitlines()):
            out.append("\n".join(lines))
    return out


def widget_sql() -> list[str]:
    """The compiled SQL of every configured widget on the warehouse."""
    from domain.config import load_config
    from metricsql import compile_intent

    cfg = load_config(Path(__file__).resolve().parents[1] / "config")
    return [
        compile_intent(cfg.metrics[w.data_intent.metric_id], w.data_intent, now=_NOW)
        for w in cfg.widgets.values()
        if cfg.routing[w.data_intent.metric_id].backend == "databricks"
    ]


_NOW = datetime(2026, 11, 26, 17, 45, 24, 654321, tzinfo=UTC)


def compiled_sql() -> list[str]:
    """The compiler's shapes over every warehouse metric: each grain, time range kind,
    filter operator and a dimension (what a dashboard can ask of the embedded engine)."""
    from domain.config import load_config
    from domain.models import DataIntent
    from metricsql import compile_intent

    cfg = load_config(Path(__file__).resolve().parents[1] / "config")
    out = []
    for mid, metric in cfg.metrics.items():
        if cfg.routing[mid].backend != "databricks":
            continue
        dims = metric.definition.dimensions[:1]
        column = next(iter(metric.definition.filter_columns or metric.definition.dimensions), None)
        shapes: list[dict[str, Any]] = [
            {"grain": g} for g in ("none", "minute", "hour", "day", "week", "month")
        ]
        shapes += [
            {"time_range": r, "dimensions": dims}
            for r in ("today", "mtd", "qtd", "ytd", "all", "last_2h")
        ]
        if column:
            for op in ("=", "!=", ">", ">=", "<", "<="):
                shapes.append({"filters": [{"column": column, "op": op, "value": "x"}]})
            for op in ("in", "not_in"):
                shapes.append({"filters": [{"column": column, "op": op, "value": ["x", "y"]}]})
        for shape in shapes:
            try:
                out.append(compile_intent(metric, DataIntent(metric_id=mid, **shape), now=_NOW))
            except Exception:  # a shape this metric does not support
                continue
    return out


def rollup_sql() -> list[str]:
    """Each configured rollup's build statement (one partition) and data-start probe: what
    the embedded engine runs to build the rollups in PostgreSQL (adapters/rollups.py)."""
    from domain.config import load_rollups
    from metricsql.rollups import build_sql, data_start_sql
    from metricsql.rollups.compile import compile_rollup
    from metricsql.rollups.timegrid import partition_of

    config = Path(__file__).resolve().parents[1] / "config"
    out = []
    for name, definition in load_rollups(config / "rollups.yaml").items():
        rollup = compile_rollup(name, definition)
        start, end = partition_of(rollup, _NOW)
        out += [build_sql(rollup, start, end), data_start_sql(rollup)]
    return out


EVAL_DATASETS = Path(__file__).resolve().parents[1] / "evals" / "datasets"


def eval_sql() -> list[str]:
    """The model-written SQL the eval suite replays (evals/datasets/*.jsonl) that the safety
    layer admits: what a dashboard's questions make the embedded engine run."""
    from sqlsafety import SafetyViolation, check_sql

    out = []
    for path in sorted(EVAL_DATASETS.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            tool = (json.loads(line).get("model_response") or {}).get("tool") or {}
            sql = tool.get("sql") if isinstance(tool, dict) else None
            if not isinstance(sql, str):
                continue
            try:
                out.append(check_sql(sql, dialect="databricks", allowed_tables=TABLES).sql)
            except SafetyViolation:
                continue
    return out


def gold_sql() -> list[str]:
    """The accuracy benchmark's gold SQL over the lakehouse (evals/accuracy/gold.yaml): the
    answers a right model writes, run on the embedded engine to score it."""
    from evals.accuracy.gold import load_gold

    return [g.sql for q in load_gold() if q.source == "lakehouse" for g in q.golds]


def candidate_sql() -> list[str]:
    """What the embedded engine must run: the corpus (as the safety layer re-renders it),
    the widgets' compiled SQL, the compiler's other shapes, the translation rules'
    reference cases (tests/integration/test_spark_reference.py), the rollups' build
    statements, the eval suite's admitted model SQL and the accuracy benchmark's gold SQL."""
    from sqlsafety import check_sql

    sql = [check_sql(q, dialect="databricks", allowed_tables=TABLES).sql for q in corpus_sql()]
    sql += semantics_sql()
    from tests.integration.test_spark_reference import ALL_CASES

    return (
        sql
        + widget_sql()
        + compiled_sql()
        + list(ALL_CASES.values())
        + rollup_sql()
        + eval_sql()
        + gold_sql()
    )


def candidates(sql: Iterable[str], results: dict[str, str]) -> dict[str, Construct]:
    """Each construct key of `sql`, with the first construct that has it (its template)."""
    out: dict[str, Construct] = {}
    for text in sql:
        for c in constructs(parse_databricks(text), results):
            out.setdefault(c.key, c)
    return out


# ------------------------------------------------------------------ cases


@dataclass(frozen=True)
class Template:
    kind: str  # "scalar" | "aggregate" | "window"
    sql: str  # Databricks SQL with placeholders __p0_, __p1_, ...
    families: tuple[str, ...]
    generator: bool = False  # a table-generating function (explode ...): rows, not a value
    approximate: bool = False  # an estimate: checked against the exact answer's error bound
    # a placeholder's own sample values (a pattern's matches and near misses) ahead of its
    # family's, by placeholder position
    samples: tuple[tuple[str, ...], ...] = ()
    pattern: str | None = None  # a regular expression some sample must match, some not


def template(c: Construct) -> Template | None:
    """The construct with each replaceable argument as a placeholder, or None when an
    argument's family has no sample values."""
    rows = isinstance(c.node, (*WINDOW_ONLY, exp.AggFunc, exp.WithinGroup)) or (
        isinstance(c.node, exp.Anonymous) and c.node.name.lower() in _AGGREGATE_NAMES
    )
    # over rows, an argument written as a constant stays (an offset, a percentage)
    marked = [a for a in c.arguments if a.replace and (not rows or _has_column(a.node))]
    families = []
    for i, arg in enumerate(marked):
        if arg.family is None or pool(arg.family) is None:
            return None
        arg.node.meta["__placeholder"] = i
        families.append(arg.family)
    try:
        node = c.node.copy()
    finally:
        for arg in marked:
            arg.node.meta.pop("__placeholder", None)
    for found in list(node.walk()):
        if isinstance(found, exp.Expr) and "__placeholder" in found.meta:
            found.replace(exp.column(f"__p{found.meta['__placeholder']}_"))
    foreign = any(isinstance(n, exp.Column) and not n.name.startswith("__p") for n in node.walk())
    if foreign and not any(isinstance(n, exp.Lambda) for n in node.walk()):
        return None  # refers to the example query's columns
    kind = "scalar"
    if isinstance(node, WINDOW_ONLY):
        order = "__k" if isinstance(node, _RANKING) else "__o"
        node = exp.Window(
            this=node,
            partition_by=[exp.column("__g")],
            order=exp.Order(expressions=[exp.Ordered(this=exp.column(order))]),
        )
        kind = "window"
    elif isinstance(node, exp.AggFunc | exp.WithinGroup) or (
        isinstance(node, exp.Anonymous) and node.name.lower() in _AGGREGATE_NAMES
    ):
        kind = "aggregate"
    generator = isinstance(node, exp.Explode | exp.Posexplode | exp.Inline | exp.Unnest)
    approximate = c.name in APPROXIMATE_NAMES
    samples, pattern = _pattern_samples(c, marked)
    return Template(
        kind, node.sql("databricks"), tuple(families), generator, approximate, samples, pattern
    )


# regular expressions (the pattern is part of the key), and LIKE (the pattern is a value)
_REGEXPS = (
    exp.RegexpLike,
    exp.RegexpILike,
    exp.RegexpExtract,
    exp.RegexpExtractAll,
    exp.RegexpCount,
    exp.RegexpReplace,
    exp.RegexpSplit,
    exp.RegexpInstr,
)


def _pattern_samples(
    c: Construct, marked: list[Any]
) -> tuple[tuple[tuple[str, ...], ...], str | None]:
    """For a regular expression: the subject's samples are strings that match the pattern
    and near misses (tests/support/patterns.py); for LIKE and ILIKE: subjects and patterns
    in pairs (escapes, `_` and `%` over line terminators, case beyond ASCII)."""
    from tests.support.patterns import LIKE_PAIRS, regex_samples, sql_string

    node = c.node
    out: list[tuple[str, ...]] = [() for _ in marked]
    pattern = node.args.get("expression")
    if isinstance(node, _REGEXPS) and isinstance(pattern, exp.Literal) and pattern.is_string:
        for i, arg in enumerate(marked):
            if arg.node is node.this:
                out[i] = tuple(sql_string(s) for s in regex_samples(pattern.name))
                return tuple(out), pattern.name
    if isinstance(node, exp.Like | exp.ILike) and len(marked) == 2:
        subjects, patterns = zip(*LIKE_PAIRS, strict=True)
        for i, arg in enumerate(marked):
            texts = subjects if arg.node is node.this else patterns
            out[i] = tuple(sql_string(s) for s in texts)
        return tuple(out), None
    return (), None


def _has_column(node: exp.Expr) -> bool:
    return any(isinstance(n, exp.Column) for n in node.walk())


def pools_of(t: Template) -> list[list[str]]:
    """Each placeholder's sample values: its own (a pattern's), then its family's."""
    out = []
    for i, family in enumerate(t.families):
        own = list(t.samples[i]) if i < len(t.samples) else []
        values = pool(family) or []
        out.append([*values[:1], *own, *values[1:]])  # the typed NULL stays first
    return out


def cases(t: Template) -> list[tuple[str, ...]]:
    """Every sample value of every argument, each with two rotating partners (so that a
    boundary is never skipped), at most MAX_CASES (more for a pattern's samples)."""
    pools = pools_of(t)
    out: list[tuple[str, ...]] = [] if pools else [()]
    for i, values in enumerate(pools):
        for j, v in enumerate(values):
            for r in range(2):
                combo = tuple(v if x == i else p[(j + r + x) % len(p)] for x, p in enumerate(pools))
                if combo not in out:
                    out.append(combo)
    return out[: MAX_CASES + sum(len(x) for x in t.samples)]


def fill(sql: str, values: tuple[str, ...]) -> str:
    for i, v in enumerate(values):
        sql = sql.replace(f"__p{i}_", f"({v})")
    return sql


def rows_table(t: Template) -> str:
    """An inline table (__g group, __o order, __k order with ties, __p<i>_ values)."""
    pools = pools_of(t)
    n = max([len(p) for p in pools] + [4])
    rows = []
    for i in range(n):  # group 1: every sample value
        rows.append([1, i, i // 2] + [p[(i + j) % len(p)] for j, p in enumerate(pools)])
    rows.append([2, 0, 0] + [p[0] for p in pools])  # group 2: NULLs only
    rows.append([2, 1, 0] + [p[0] for p in pools])
    rows.append([3, 0, 0] + [p[min(1, len(p) - 1)] for p in pools])  # group 3: one row
    names = ["__g", "__o", "__k"] + [f"__p{i}_" for i in range(len(pools))]
    values = ", ".join("(" + ", ".join(str(v) for v in row) + ")" for row in rows)
    return f"VALUES {values} AS t({', '.join(names)})"


def row_query(t: Template) -> str:
    """For aggregates and windows: one query over the inline table."""
    table = rows_table(t)
    if t.kind == "aggregate":
        return (
            f"SELECT -1 AS g, {t.sql} AS v FROM {table} WHERE __g < 0 UNION ALL "
            f"SELECT __g AS g, {t.sql} AS v FROM {table} GROUP BY __g ORDER BY g"
        )
    return f"SELECT __g, __o, {t.sql} AS v FROM {table} ORDER BY __g, __o"


# ------------------------------------------------------------------ running


@dataclass(frozen=True)
class Answer:
    error: str | None
    families: tuple[str | None, ...] = ()
    rows: tuple[tuple[Any, ...], ...] = ()


_COLON_PATH = re.compile(r"(\((?:[^()]|\([^()]*\))*\)):(\w+)")


def spark_answer(spark: Any, sql: str) -> Answer:
    from tests.support.spark import for_spark

    # `(value):key` in a case: what Databricks documents it to mean (get_json_object)
    sql = _COLON_PATH.sub(lambda m: f"get_json_object({m.group(1)}, '$.{m.group(2)}')", sql)
    try:
        df = spark.sql(for_spark(sql))
        types = [f.dataType.simpleString() for f in df.schema.fields]
        fams = tuple(_spark_family(t) for t in types)
        rows = tuple(
            tuple(
                _spark_value(v, zoned=t != "timestamp_ntz") for v, t in zip(row, types, strict=True)
            )
            for row in df.collect()
        )
    except Exception as e:  # any Spark failure: analysis or an ANSI runtime error
        return Answer(error=str(e).splitlines()[0][:160] or type(e).__name__)
    return Answer(None, fams, rows)


def duckdb_answer(warehouse: DuckDBWarehouse, sql: str) -> Answer:
    try:
        result = asyncio.run(warehouse.execute(sql, max_rows=1000))
    except WarehouseFailure as e:
        return Answer(error=e.detail[:160])
    fams = tuple(_duckdb_family(t) for t in result.meta["duckdb_types"])
    names = [c.name for c in result.columns]
    return Answer(None, fams, tuple(tuple(row[n] for n in names) for row in result.rows))


def _spark_family(simple: str) -> str | None:
    if simple == "void":
        return "null"
    if simple.startswith("interval"):
        return "interval"
    try:
        return type_family(exp.DataType.build(simple, dialect="databricks"))
    except Exception:
        return None


def _duckdb_family(native: str) -> str | None:
    if native == '"NULL"' or native.upper() == "NULL":
        return "null"
    try:
        return type_family(exp.DataType.build(native, dialect="duckdb"))
    except Exception:
        return None


def _spark_value(v: Any, *, zoned: bool = True) -> Any:
    if hasattr(v, "asDict"):
        v = v.asDict(recursive=False)
    if isinstance(v, dict):
        return json_safe({str(k): _spark_value(x, zoned=zoned) for k, x in v.items()})
    if isinstance(v, list | tuple):
        return [_spark_value(x, zoned=zoned) for x in v]
    if isinstance(v, datetime) and v.tzinfo is None and zoned:
        v = v.astimezone(UTC)  # pyspark gives naive local times
    return json_safe(v)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def disagreement(spark: Answer, duck: Answer) -> str | None:
    if spark.error or duck.error:
        if spark.error and duck.error:
            return None
        return f"Spark: {spark.error or 'a value'}; DuckDB: {duck.error or 'a value'}"
    if spark.families != duck.families:
        return f"result types: Spark {spark.families}, DuckDB {duck.families}"
    if len(spark.rows) != len(duck.rows):
        return f"{len(spark.rows)} rows on Spark, {len(duck.rows)} on DuckDB"
    for r1, r2 in zip(spark.rows, duck.rows, strict=True):
        for x, y in zip(r1, r2, strict=True):
            if not same(x, y):
                return f"Spark {x!r}, DuckDB {y!r}"
    return None


def evaluate(
    run: Callable[[str], Answer], exprs: list[str], whole: Answer | None = None
) -> list[Answer]:
    """Each scalar expression's answer: all in one SELECT, halved around errors."""
    whole = whole or run("SELECT " + ", ".join(exprs))
    if whole.error is None and len(whole.rows) == 1 and len(whole.families) == len(exprs):
        return [_column(whole, i) for i in range(len(exprs))]
    if len(exprs) <= 1:
        return [whole] * len(exprs)
    half = len(exprs) // 2
    return evaluate(run, exprs[:half]) + evaluate(run, exprs[half:])


def verify(
    t: Template, spark: Callable[[str], Answer], duck: Callable[[str], Answer], *, clock: bool
) -> tuple[str | None, str | None]:
    """(result family, None) when every case agrees, else (None, the first difference)."""
    if t.kind == "scalar":
        exprs = [fill(t.sql, v) for v in cases(t)]
        if t.generator:  # one generator per SELECT on Spark: each case alone
            pairs = [(spark(f"SELECT {e}"), duck(f"SELECT {e}")) for e in exprs]
            answers = [(e, sa, da) for e, (sa, da) in zip(exprs, pairs, strict=True)]
        else:
            batch = "SELECT " + ", ".join(exprs)
            db = duck(batch)
            ducks = evaluate(duck, exprs, db)
            fine = [e for e, a in zip(exprs, ducks, strict=True) if a.error is None]
            sb = spark("SELECT " + ", ".join(fine)) if fine else Answer(None)
            if sb.error:  # a case DuckDB answers fails on Spark
                return None, f"{t.sql}: Spark: {sb.error}; DuckDB: values"
            found = dict(zip(fine, evaluate(spark, fine, sb), strict=True)) if fine else {}
            answers = []
            for e, da in zip(exprs, ducks, strict=True):
                sa = found.get(e) or spark(f"SELECT {e}")  # DuckDB failed: Spark must too
                answers.append((e, sa, da))
                if disagreement(sa, da):
                    break
    elif t.approximate:  # DuckDB against the exact answer, within the documented error
        q = row_query(t)
        sa, da = spark(q), duck(q)
        answers = [(t.sql, sa, da)]
        if sa.error is None and da.error is None:
            if sa.families != da.families:
                return None, f"{t.sql}: result types: Spark {sa.families}, DuckDB {da.families}"
            diff = _outside_error_bound(t, spark, da)
            if diff:
                return None, f"{t.sql}: {diff}"
            answers = [(t.sql, sa, sa)]
    else:
        q = row_query(t)
        answers = [(t.sql, spark(q), duck(q))]
    family = None
    useful = False
    for label, sa, da in answers:
        if clock and sa.error is None and da.error is None:
            sa, da = Answer(None, sa.families), Answer(None, da.families)
            useful = True
        diff = disagreement(sa, da)
        if diff:
            return None, f"{label}: {diff}"
        if sa.error is None:
            family = family or sa.families[-1]
            useful = useful or any(r[-1] is not None for r in sa.rows)
    if not useful:
        return None, "no case gave a value on Spark"
    unexercised = _matched_both_ways(t, spark) if t.pattern is not None else None
    if unexercised:
        return None, unexercised
    return family, None


def _matched_both_ways(t: Template, spark: Callable[[str], Answer]) -> str | None:
    """None when Spark finds the pattern in some subject sample and not in another: the
    cases exercised a match (its groups, anchors, replacement), not only misses."""
    from tests.support.patterns import sql_string

    subjects = max(t.samples, key=len)
    pattern = sql_string(t.pattern or "")
    found = spark("SELECT " + ", ".join(f"({s}) RLIKE {pattern}" for s in subjects))
    if found.error or not found.rows:
        return f"{t.sql}: the pattern's samples fail on Spark: {found.error}"
    if not (True in found.rows[0] and False in found.rows[0]):
        return f"{t.sql}: no sample matches the pattern (and another does not)"
    return None


# Spark's documented defaults: approx_count_distinct's relative standard deviation, and
# percentile_approx's accuracy (1/accuracy is the relative error of the rank)
DEFAULT_RSD = 0.05
DEFAULT_ACCURACY = 10000


def _outside_error_bound(t: Template, spark: Callable[[str], Answer], duck: Answer) -> str | None:
    """An approximate aggregate's DuckDB answer against the EXACT answer computed on
    Spark, per group: approx_count_distinct within its relative standard deviation (rsd,
    default 0.05) of count(DISTINCT x); percentile_approx a value of the sorted non-NULL
    values at a rank within n/accuracy of ceil(p * n). None when within the bound."""
    node = parse_databricks(f"SELECT {t.sql}").selects[0]
    if isinstance(node, exp.ApproxDistinct):
        acc = node.args.get("accuracy")
        rsd = float(acc.name) if acc is not None else DEFAULT_RSD
        exact_sql = exp.Count(this=exp.Distinct(expressions=[node.this.copy()])).sql("databricks")
    elif isinstance(node, exp.ApproxQuantile) and not isinstance(node.args["quantile"], exp.Array):
        acc = node.args.get("accuracy")
        accuracy = int(acc.name) if acc is not None else DEFAULT_ACCURACY
        p = float(node.args["quantile"].name)
        exact_sql = f"array_sort(collect_list({node.this.sql('databricks')}))"
    else:
        return f"no error bound known for {t.sql}"
    exact = spark(row_query(Template(t.kind, exact_sql, t.families)))
    if exact.error:
        return f"the exact answer fails on Spark: {exact.error}"
    if len(exact.rows) != len(duck.rows):
        return f"{len(exact.rows)} groups exactly, {len(duck.rows)} on DuckDB"
    for (g, want), (g2, got) in zip(exact.rows, duck.rows, strict=True):
        if g != g2:
            return f"groups {g} and {g2}"
        if isinstance(node, exp.ApproxDistinct):
            if got is None or abs(got - want) > rsd * want:
                return f"group {g}: DuckDB {got!r}, exactly {want!r} (rsd {rsd})"
            continue
        values = want or []
        if not values:
            if got is not None:
                return f"group {g}: DuckDB {got!r} over no values"
            continue
        n = len(values)
        rank = max(math.ceil(p * n), 1)
        slack = math.floor(n / accuracy)
        allowed = values[max(rank - 1 - slack, 0) : rank + slack]
        if not any(same(got, v) for v in allowed):
            return f"group {g}: DuckDB {got!r}, within the error bound: {allowed!r}"
    return None


def _column(a: Answer, i: int) -> Answer:
    return Answer(None, (a.families[i],), ((a.rows[0][i],),))


def prefetch(
    run: Callable[[str], Answer], templates: dict[str, Template | None], chunk: int = 12
) -> dict[str, Answer]:
    """The batch answers of many scalar constructs from few queries: `chunk` batches per
    SELECT; a SELECT that fails leaves its batches to run alone."""
    batches = [
        [fill(t.sql, v) for v in cases(t)]
        for t in templates.values()
        if t is not None and t.kind == "scalar" and not t.generator
    ]
    memo: dict[str, Answer] = {}
    for i in range(0, len(batches), chunk):
        group = batches[i : i + chunk]
        exprs = [e for b in group for e in b]
        whole = run("SELECT " + ", ".join(exprs))
        if whole.error or len(whole.rows) != 1 or len(whole.families) != len(exprs):
            continue
        start = 0
        for b in group:
            end = start + len(b)
            memo["SELECT " + ", ".join(b)] = Answer(
                None, whole.families[start:end], (whole.rows[0][start:end],)
            )
            start = end
    return memo


def verified_set(spark_session: Any, *, rounds: int = 3) -> dict[str, Any]:
    """Run the differential test over every candidate: the verified set's data."""
    verified: dict[str, str] = {}
    refused: dict[str, str] = {}
    sql = candidate_sql()
    warehouse = DuckDBWarehouse(verified=UNGATED)
    try:
        for _ in range(rounds):
            found = candidates(sql, verified)
            todo = {k: c for k, c in found.items() if k not in verified and k not in refused}
            if not todo:
                break
            templates = {k: template(c) for k, c in sorted(todo.items())}
            spark_memo = prefetch(lambda q: spark_answer(spark_session, q), templates)
            duck_memo = prefetch(lambda q: duckdb_answer(warehouse, q), templates)
            for key, c in sorted(todo.items()):
                t = templates[key]
                if t is None:
                    refused[key] = "no sample values for an argument's type"
                    continue
                family, why = verify(
                    t,
                    lambda q, m=spark_memo: m.get(q) or spark_answer(spark_session, q),  # type: ignore[misc]
                    lambda q, m=duck_memo: m.get(q) or duckdb_answer(warehouse, q),  # type: ignore[misc]
                    clock=c.name in CLOCK,
                )
                if family is not None:
                    verified[key] = family
                else:
                    refused[key] = why or "differs"
    finally:
        warehouse.close()
    # keep only what the candidates use now
    final = candidates(sql, verified)
    return {
        "comment": (
            "Generated by the differential test (tests/differential.py; `make verified`): "
            "constructs the embedded engine runs, with the result type family Spark and "
            "DuckDB agreed on, and those it refuses with the first difference found."
        ),
        "verified": {k: verified[k] for k in sorted(verified) if k in final},
        "refused": {k: refused[k] for k in sorted(refused) if k in final},
    }


def write(data: dict[str, Any], path: Path = VERIFIED_PATH) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")


def main() -> int:
    """Regenerate adapters/embedded_verified.json on a local Spark session."""
    import tempfile

    from tests.support.spark import spark_session, write_lakehouse_parquet

    with tempfile.TemporaryDirectory() as tmp:
        parquet = write_lakehouse_parquet(Path(tmp))
        with spark_session(parquet, Path(tmp)) as spark:
            data = verified_set(spark)
    write(data)
    print(f"{len(data['verified'])} verified, {len(data['refused'])} refused -> {VERIFIED_PATH}")
    return 0


# ------------------------------------------------------------------ whole queries

SEMANTICS = Path(__file__).parent / "fixtures" / "fidelity" / "semantics.sql"
REFUSAL = "not supported on the embedded engine"


def semantics_sql() -> list[str]:
    """The semantics set (tests/fixtures/fidelity/semantics.sql) as the safety layer
    re-renders it: candidates too, so its constructs are verified or refused by name."""
    from sqlsafety import SafetyViolation, check_sql

    out = []
    for block in SEMANTICS.read_text().split("\n\n"):
        lines = block.strip().splitlines()
        if any(ln.startswith("# id:") for ln in lines):
            text = "\n".join(ln for ln in lines if not ln.startswith("#"))
            try:
                out.append(check_sql(text, dialect="databricks", allowed_tables=TABLES).sql)
            except SafetyViolation:
                continue
    return out


def _ordered(sql: str) -> bool:
    try:
        tree = parse_databricks(sql)
    except Exception:
        return False
    return tree.args.get("order") is not None


def query_difference(spark: Answer, duck: Answer, sql: str) -> str | None:
    """A whole query's answers on Spark and on the embedded engine: None when they agree
    (the same result types and rows, in order when the query orders them, or an error on
    both) or when the embedded engine refused by name; else the silent difference."""
    if duck.error and REFUSAL in duck.error:
        return None
    if spark.error or duck.error:
        return disagreement(spark, duck)
    if not _ordered(sql):
        key = _sort_key
        spark = Answer(None, spark.families, tuple(sorted(spark.rows, key=key)))
        duck = Answer(None, duck.families, tuple(sorted(duck.rows, key=key)))
    return disagreement(spark, duck)


def _sort_key(row: tuple[Any, ...]) -> str:
    return json.dumps(row, default=str, sort_keys=True)


__all__ = ["VerifiedSet", "main", "verified_set", "write"]

if __name__ == "__main__":
    sys.exit(main())
