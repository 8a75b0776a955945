"""Which parts of an answer are approximate (sqlsafety/approximate.py)."""

from __future__ import annotations

import pytest

from sqlsafety.approximate import Approximation, approximation

T = "main.claims.claim_events"


@pytest.mark.parametrize(
    ("sql", "functions", "columns"),
    [
        (
            f"SELECT region, approx_count_distinct(device_id) AS n FROM {T} GROUP BY 1",
            ["approx_count_distinct"],
            ["n"],
        ),
        (
            f"SELECT percentile_approx(amount, 0.5) AS p50, count(*) AS n FROM {T}",
            ["percentile_approx"],
            ["p50"],
        ),
        (f"SELECT approx_percentile(amount, 0.9) AS p90 FROM {T}", ["percentile_approx"], ["p90"]),
        # through a CTE and an expression over its column
        (
            f"WITH r AS (SELECT region, approx_count_distinct(device_id) AS d FROM {T} GROUP BY 1) "
            "SELECT region, d * 2 AS twice, 1 AS one FROM r",
            ["approx_count_distinct"],
            ["twice"],
        ),
        # only the rows' selection is approximate
        (
            f"SELECT region FROM {T} GROUP BY region HAVING approx_count_distinct(device_id) > 3",
            ["approx_count_distinct"],
            [],
        ),
        (
            f"SELECT hll_sketch_estimate(hll_sketch_agg(device_id)) AS d FROM {T}",
            ["hll_sketch_agg", "hll_sketch_estimate"],
            ["d"],
        ),
    ],
)
def test_approximate_functions_and_the_columns_they_feed(
    sql: str, functions: list[str], columns: list[str]
) -> None:
    found = approximation(sql)
    assert found.approximate
    assert list(found.functions) == functions and list(found.columns) == columns


@pytest.mark.parametrize(
    "sql",
    [
        f"SELECT count(DISTINCT device_id) AS n FROM {T}",
        f"SELECT percentile(amount, 0.5) AS p FROM {T}",
        f"SELECT approx_count FROM {T}",  # a column named like one
        "not sql at all (",
        None,
    ],
)
def test_exact_answers_are_not_approximate(sql: str | None) -> None:
    assert approximation(sql) == Approximation()
