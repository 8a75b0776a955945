"""Metric definition + DataIntent -> one Databricks SELECT (see metricsql.compiler)."""

from metricsql.compiler import GRAIN_UNITS, compile_intent

__all__ = ["GRAIN_UNITS", "compile_intent"]
