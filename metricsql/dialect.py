"""Databricks parsing that keeps DATEDIFF's meaning: shared with the safety layer, which
owns it (`sqlsafety.dialect`); the compiler and the transpiler use the same functions."""

from sqlsafety.dialect import (
    DATABRICKS,
    argument_count,
    datediff_with_unit_as_timestampdiff,
    keep_two_argument_datediff,
    parse,
)

__all__ = [
    "DATABRICKS",
    "argument_count",
    "datediff_with_unit_as_timestampdiff",
    "keep_two_argument_datediff",
    "parse",
]
