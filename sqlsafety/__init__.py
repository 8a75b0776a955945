"""The SQL safety layer: only one read-only query over allowlisted tables, with known
functions and a bounded row count, gets through; the SQL that runs is re-rendered from
the checked tree.

    from sqlsafety import check_sql, SafetyViolation
    checked = check_sql(sql, dialect="databricks", allowed_tables={"main.claims.claim_events"})
    run(checked.sql)
"""

from sqlsafety.catalog import default_allowlist
from sqlsafety.errors import PolicyError, SafetyError, SafetyViolation, UnparseableSql
from sqlsafety.names import DIALECTS
from sqlsafety.policy import MAX_SQL_CHARS, POLICY_VERSION, CheckedSql, check_sql
from sqlsafety.rules import RULES

__all__ = [
    "DIALECTS",
    "MAX_SQL_CHARS",
    "POLICY_VERSION",
    "RULES",
    "CheckedSql",
    "PolicyError",
    "SafetyError",
    "SafetyViolation",
    "UnparseableSql",
    "check_sql",
    "default_allowlist",
]
