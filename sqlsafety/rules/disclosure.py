"""Rules against reads that disclose the warehouse's own configuration or storage rather
than table data: Spark variable substitution and hidden metadata columns."""

from __future__ import annotations

from sqlglot import exp

from sqlsafety.errors import SafetyViolation
from sqlsafety.prepare import Check

SUBSTITUTION = "${"


def variable_substitution(check: Check) -> None:
    """No `${` anywhere: Spark substitutes `${env:X}`, `${system:x}`, `${spark.x}`,
    `${hiveconf:x}`... in the SQL text before parsing it, string literals and quoted
    identifiers included, so such a query reads the driver's settings and environment
    (tokens, secret keys). Judged on the text as written and on every parsed literal and
    name (an escape such as `'$\\{'` the parser decodes); the rendered SQL is checked again
    before it is returned (`sqlsafety.policy.render`)."""
    if SUBSTITUTION in check.sql:
        raise SafetyViolation(
            "variable_substitution",
            "'${' is not allowed anywhere in the SQL: Spark substitutes ${...} variables "
            "(environment, system properties, Spark settings) before parsing",
        )
    for node in check.of(exp.Literal, exp.Identifier, exp.Var, exp.RawString, exp.HexString):
        if SUBSTITUTION in str(node.this):
            raise SafetyViolation(
                "variable_substitution",
                "'${' is not allowed in a literal or a name: Spark substitutes ${...} variables",
            )


# Columns a file-based table carries without declaring them (`SELECT *` does not show them).
HIDDEN_COLUMNS = frozenset({"_metadata"})


def hidden_column(check: Check) -> None:
    """No hidden metadata column (`_metadata`, `_metadata.file_path`, `t._metadata`,
    `_metadata['file_path']`, any quoting or letter case): it discloses storage paths and
    file details, not data. Only a metric whose definition names one allows it
    (`check_sql(..., hidden_columns=True)`)."""
    if check.hidden_columns:
        return
    for node in check.of(exp.Identifier):
        if node.name.lower() in HIDDEN_COLUMNS:
            raise SafetyViolation(
                "hidden_column",
                f"the hidden column {node.name} (file paths and storage details) is not "
                "allowed: only a metric that names it in its definition may read it",
            )
