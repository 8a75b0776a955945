"""Databricks -> DuckDB translation rules, in the style of sqlglot's optimizer: one small
function per construct, collected in `RULES`.

A rule takes one node of the typed Databricks tree (adapters/embedded_rule.py annotates
it) and returns it unchanged, or the DuckDB expression that gives Databricks' answer.
Each rule owns its own node classes (and, for functions sqlglot keeps by name, its own
names), so no two rules rewrite the same node and the order of `RULES` does not matter
(tests/unit/test_transpile.py checks it over the fidelity corpus). Rules only translate:
whether a construct may run at all is the embedded rule's verified set.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp

from adapters.transpile_rules.numeric import (
    DIVIDE_BY_ZERO_MESSAGE,
    REMAINDER_BY_ZERO_MESSAGE,
    approximate_distinct,
    casts,
    collect_empty,
    count_if,
    decimal_average,
    division,
    max_by_nulls,
    named_functions,
    percentiles,
    text_casts,
)
from adapters.transpile_rules.temporal import (
    date_results,
    date_trunc_unit,
    day_of_week,
    months_between,
    time_window,
    time_zones,
    timestampdiff,
    trunc,
    unix_timestamp,
)
from adapters.transpile_rules.text import (
    colon_path,
    from_json,
    get_json_object,
    like_escape,
    split,
    substring,
)

Rule = Callable[[exp.Expr], exp.Expr]

RULES: tuple[Rule, ...] = (
    timestampdiff,
    unix_timestamp,
    trunc,
    date_trunc_unit,
    day_of_week,
    date_results,
    months_between,
    time_zones,
    time_window,
    division,
    decimal_average,
    percentiles,
    approximate_distinct,
    max_by_nulls,
    count_if,
    collect_empty,
    casts,
    text_casts,
    named_functions,
    substring,
    colon_path,
    from_json,
    get_json_object,
    split,
    like_escape,
)


def rewrite(node: exp.Expr) -> exp.Expr:
    """The first (and only) rule's rewrite of `node`, or `node`."""
    for rule in RULES:
        fixed = rule(node)
        if fixed is not node:
            return fixed
    return node


__all__ = ["DIVIDE_BY_ZERO_MESSAGE", "REMAINDER_BY_ZERO_MESSAGE", "RULES", "Rule", "rewrite"]
