"""Typed filters: a filter value must fit its column's warehouse type."""

from __future__ import annotations

import pytest

from domain.models import DataIntent, Filter, MetricDef, MetricDefinition, filter_type_problems

METRIC = MetricDef(
    name="m",
    description="d",
    unit="u",
    owner="o",
    definition=MetricDefinition(
        table="main.claims.claim_events",
        measure="count(*)",
        time_column="event_ts",
        dimensions=["region"],
        filter_columns=["amount", "event_id", "event_ts", "flag"],
    ),
)
TYPES = {
    "region": "STRING",
    "amount": "DECIMAL(12,2)",
    "event_id": "BIGINT",
    "event_ts": "TIMESTAMP",
    "flag": "BOOLEAN",
}


@pytest.mark.parametrize(
    ("column", "op", "value", "fits"),
    [
        ("region", "in", ["west", "east"], True),
        ("region", "in", ["west", 5], False),
        ("region", "=", 5, False),
        ("amount", "<=", 2.5, True),
        ("amount", ">", 3, True),
        ("amount", "=", "3", False),
        ("amount", "=", True, False),
        ("event_id", "=", 7, True),
        ("event_id", "=", 7.5, False),
        ("event_ts", ">=", "2026-01-01T00:00:00Z", True),
        ("event_ts", ">=", "yesterday", False),
        ("flag", "=", True, True),
        ("flag", "=", "true", False),
    ],
)
def test_filter_values_must_fit_the_column_type(
    column: str, op: str, value: object, fits: bool
) -> None:
    intent = DataIntent(metric_id="m", filters=[Filter(column=column, op=op, value=value)])  # type: ignore[arg-type]
    problems = filter_type_problems(intent, METRIC, TYPES)
    assert (problems == []) is fits, problems
    if not fits:
        assert problems[0].startswith(f"filter {column} ") and TYPES[column] in problems[0]


def test_unknown_types_are_not_judged() -> None:
    intent = DataIntent(metric_id="m", filters=[Filter(column="region", value=5)])
    assert filter_type_problems(intent, METRIC, {}) == []
