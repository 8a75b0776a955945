"""The safety rules, in the style of sqlglot's optimizer: one small function per rule,
chained in `RULES`, each named by the rule id it reports.

A rule takes the prepared `Check` (sqlsafety.prepare: the parsed statements and the
node index built once) and either returns (the query passes that rule) or raises
`SafetyViolation(<its own name>, reason)`. No rule depends on another having run, nor on
the order: `check_sql(..., rules=...)` gives the same verdicts in any order (tests run
them shuffled, and each rule alone over its fixture file tests/fixtures/safety/rules/).
The order of `RULES` only decides which rule is reported when several would reject.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlsafety.prepare import Check
from sqlsafety.rules.calls import (
    denied_function,
    function_not_allowed,
    qualified_function,
    resource_limit,
    unknown_function,
)
from sqlsafety.rules.columns import unknown_column
from sqlsafety.rules.disclosure import hidden_column, variable_substitution
from sqlsafety.rules.joins import cartesian_join
from sqlsafety.rules.limits import row_limit
from sqlsafety.rules.statements import (
    command,
    hint,
    locking,
    pivot,
    query_root,
    read_only,
    recursive_cte,
    select_into,
    single_statement,
    syntax,
)
from sqlsafety.rules.tables import file_reader, is_cte_reference, table_function, table_not_allowed

Rule = Callable[[Check], None]

RULES: tuple[Rule, ...] = (
    single_statement,
    variable_substitution,
    command,
    read_only,
    select_into,
    locking,
    query_root,
    recursive_cte,
    table_function,
    file_reader,
    syntax,
    pivot,
    hint,
    hidden_column,
    table_not_allowed,
    qualified_function,
    denied_function,
    function_not_allowed,
    unknown_function,
    cartesian_join,
    resource_limit,
    unknown_column,
    row_limit,
)

__all__ = ["RULES", "Check", "Rule", "is_cte_reference"]
