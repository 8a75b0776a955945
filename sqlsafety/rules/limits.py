"""The row-limit rule: the outermost query returns at most `max_rows` rows.

The rule only judges and records the limit; the final rendering step (policy.py) adds
the LIMIT when the query has none, so no rule ever sees a tree another one changed.
"""

from __future__ import annotations

from sqlglot import exp

from sqlsafety.errors import SafetyViolation
from sqlsafety.prepare import Check, show


def _literal_int(node: exp.Expr | None, what: str, dialect: str) -> int:
    if isinstance(node, exp.Literal) and not node.is_string and node.is_int:
        return int(node.this)
    raise SafetyViolation(
        "row_limit", f"{what} must be a literal integer, got {show(node, dialect, 40)}"
    )


def _rows(root: exp.Expr, check: Check) -> int | None:
    """The outer limit of one statement (None: it has none), or reject it."""
    limit = root.args.get("limit")
    if limit is None:
        return None
    options = limit.args.get("limit_options")
    if isinstance(options, exp.LimitOptions) and (
        options.args.get("percent") or options.args.get("with_ties")
    ):
        raise SafetyViolation("row_limit", "PERCENT / WITH TIES limits are not allowed")
    if isinstance(limit, exp.Fetch):
        count = limit.args.get("count")
        rows = 1 if count is None else _literal_int(count, "FETCH FIRST", check.dialect)
    elif (
        isinstance(limit, exp.Limit)
        and not limit.args.get("expressions")
        and limit.args.get("offset") is None
    ):
        rows = _literal_int(limit.args.get("expression"), "LIMIT", check.dialect)
    else:
        raise SafetyViolation(
            "row_limit", f"unsupported row limit {show(limit, check.dialect, 40)}"
        )
    if rows > check.max_rows:
        raise SafetyViolation(
            "row_limit", f"LIMIT {rows} is above the maximum of {check.max_rows} rows"
        )
    return rows


def row_limit(check: Check) -> None:
    """A larger or non-literal outer limit (LIMIT ALL, expressions, parameters, PERCENT,
    WITH TIES) is rejected; a missing one is added at rendering (records the limit)."""
    for root in check.statements:
        check.limit = _rows(root, check)
