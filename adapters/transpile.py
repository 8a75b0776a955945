"""Databricks SQL -> DuckDB SQL with sqlglot, for the embedded engine.

`to_duckdb` parses one query in the Databricks dialect, types it and refuses any construct
not verified for its argument types (adapters/embedded_rule.py), rewrites the typed
sqlglot expressions with the translation rules (adapters/transpile_rules: one rule per
construct, each proven on Spark by the differential test), and generates DuckDB SQL.
sqlglot parses 2- and 3-argument DATEDIFF to the same node, so 3-argument calls are
renamed to TIMESTAMPDIFF at the token level before parsing (metricsql.dialect.parse).

Only a single query (SELECT / set operation) is accepted: anything else, or SQL sqlglot
cannot parse or translate, raises `TranspileError`.
"""

from __future__ import annotations

import re

from sqlglot import exp
from sqlglot.errors import ErrorLevel, SqlglotError

from adapters.embedded_refusals import EmbeddedUnsupported, TranspileError, refuse_unsupported
from adapters.embedded_rule import VerifiedSet, check_verified, default_verified
from adapters.transpile_rules import DIVIDE_BY_ZERO_MESSAGE, REMAINDER_BY_ZERO_MESSAGE, rewrite
from metricsql import dialect

__all__ = [
    "DIVIDE_BY_ZERO_MESSAGE",
    "REMAINDER_BY_ZERO_MESSAGE",
    "EmbeddedUnsupported",
    "TranspileError",
    "apply_fixes",
    "parse_databricks",
    "to_duckdb",
]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # sqlglot underlines the error position in messages


def to_duckdb(sql: str, verified: VerifiedSet | None = None) -> str:
    """Translate one Databricks SQL query to DuckDB SQL (see the module docstring), if
    every construct it uses is verified (adapters/embedded_rule.py; default: the committed
    verified set), else raise `EmbeddedUnsupported`."""
    try:
        tree, _ = check_verified(parse_databricks(sql), verified or default_verified())
        assert isinstance(tree, exp.Query)
        fixed = apply_fixes(tree)
        for node in fixed.walk():  # typed for the rules; DuckDB's generator reads no types
            node.type = None
        return fixed.sql(dialect="duckdb", unsupported_level=ErrorLevel.RAISE)
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
    """Apply the translation rules bottom-up (children before parents) on a copy of `tree`."""
    root: exp.Expr = tree.copy()
    refuse_unsupported(root)
    for select in root.find_all(exp.Select):  # optimizer hints change plans, never rows
        select.set("hint", None)
    for node in reversed(list(root.walk())):
        fixed = rewrite(node)
        if fixed is not node and fixed.type is None:
            fixed.type = node.type  # a rewrite keeps its meaning, so its type, for outer rules
        if fixed is node:
            continue
        if node is root:
            root = fixed
        else:
            node.replace(fixed)
    assert isinstance(root, exp.Query)
    return root
