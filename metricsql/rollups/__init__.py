"""Rollups, pure: validating declarations (`validate_rollups`), matching an intent
(`match`), the SQL that builds a partition on the warehouse and reads the rollup in
PostgreSQL, and the time grid of partitions."""

from metricsql.rollups.compile import (
    MetricMeasure,
    RollupProblem,
    aggregate_of,
    compile_rollup,
    metric_measure,
    validate_rollups,
)
from metricsql.rollups.match import NoMatch, match
from metricsql.rollups.sql import build_sql, data_start_sql, read_sql
from metricsql.rollups.timegrid import (
    partition_of,
    partitions_between,
    trunc,
    update_window,
)

__all__ = [
    "MetricMeasure",
    "NoMatch",
    "RollupProblem",
    "aggregate_of",
    "build_sql",
    "compile_rollup",
    "data_start_sql",
    "match",
    "metric_measure",
    "partition_of",
    "partitions_between",
    "read_sql",
    "trunc",
    "update_window",
    "validate_rollups",
]
