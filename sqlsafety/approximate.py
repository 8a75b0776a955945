"""Which parts of a query's answer are approximate: the approximate aggregates it calls
(`approx_count_distinct`, `percentile_approx`/`approx_percentile`, sketches) and the output
columns whose values come from one (through CTEs, subqueries and expressions over them).

    approximation("SELECT region, approx_count_distinct(device_id) AS n FROM t GROUP BY 1")
    -> Approximation(functions=("approx_count_distinct",), columns=("n",))

Columns are followed by name, conservatively: a column is approximate when its expression
calls an approximate aggregate or names a column some inner SELECT computed with one. An
approximate aggregate only in WHERE/HAVING/ORDER BY makes the rows approximate, not a
column: `functions` is set and `columns` may be empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from sqlglot import exp, parse_one
from sqlglot.errors import SqlglotError

# function names (as Databricks spells them) whose documented result is an estimate
APPROXIMATE_FUNCTIONS = frozenset(
    {
        "approx_count_distinct",
        "approx_percentile",
        "percentile_approx",
        "approx_top_k",
        "hll_sketch_agg",
        "hll_union_agg",
        "hll_sketch_estimate",
        "hll_union",
        "kll_sketch_agg",
        "kll_sketch_get_quantile",
        "count_min_sketch",
    }
)


@dataclass(frozen=True, slots=True)
class Approximation:
    functions: tuple[str, ...] = ()  # the approximate functions called, sorted
    columns: tuple[str, ...] = ()  # the output columns computed from one, in output order

    @property
    def approximate(self) -> bool:
        return bool(self.functions)


NONE = Approximation()
# every approximate function's name holds one of these (a query without any calls none, and
# is not parsed: a cache hit shapes its answer without parsing its SQL)
_MARKERS = ("approx", "sketch", "hll_", "kll_")


def _name(node: exp.Expr) -> str | None:
    if isinstance(node, exp.ApproxDistinct):
        return "approx_count_distinct"
    if isinstance(node, exp.ApproxQuantile):
        return "percentile_approx"
    if isinstance(node, exp.Func):
        name = (node.name if isinstance(node, exp.Anonymous) else (node.sql_name() or "")).lower()
        return name if name in APPROXIMATE_FUNCTIONS else None
    return None


def approximation(sql: str | None, dialect: str = "databricks") -> Approximation:
    """The approximate functions `sql` calls and the output columns they feed (NONE for
    SQL that calls none, or that does not parse: then nothing ran). Remembered per SQL text:
    every answer over the same SQL (each cache hit) asks again."""
    if not sql:
        return NONE
    lowered = sql.lower()
    if not any(marker in lowered for marker in _MARKERS):
        return NONE
    return _approximation(sql, dialect)


@lru_cache(maxsize=512)
def _approximation(sql: str, dialect: str) -> Approximation:
    try:
        tree = parse_one(sql, read=dialect)
    except (SqlglotError, RecursionError, ValueError):
        return NONE
    functions = sorted({n for node in tree.walk() if (n := _name(node))})
    if not functions:
        return NONE
    tainted: set[str] = set()
    selects = list(tree.find_all(exp.Select))
    changed = True
    while changed:  # to a fixed point: a CTE's column feeds an outer SELECT's
        changed = False
        for select in selects:
            for projection in select.expressions:
                alias = projection.alias_or_name
                if alias in tainted or not alias:
                    continue
                if _depends(projection, tainted):
                    tainted.add(alias)
                    changed = True
    outer = tree
    while isinstance(outer, exp.SetOperation):
        outer = outer.this
    columns: list[str] = []
    if isinstance(outer, exp.Select):
        for projection in outer.expressions:
            if isinstance(projection, exp.Star):
                columns += sorted(tainted)  # SELECT *: any approximate name it may pass on
            elif _depends(projection, tainted):
                columns.append(projection.alias_or_name or projection.sql(dialect))
    return Approximation(tuple(functions), tuple(dict.fromkeys(columns)))


def _depends(projection: exp.Expr, tainted: set[str]) -> bool:
    for node in projection.walk():
        if _name(node):
            return True
        if isinstance(node, exp.Column) and node.name in tainted:
            return True
    return False
