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


# ------------------------------------------------------------------ the differential check


def _exact(rows: tuple[tuple[object, ...], ...]):  # type: ignore[no-untyped-def]
    from tests.differential import Answer

    return lambda _q: Answer(None, ("integer", "array<integer>"), rows)


@pytest.mark.parametrize(
    ("sql", "exact", "duck", "within"),
    [
        # approx_count_distinct: within rsd (default 0.05) of count(DISTINCT x)
        ("APPROX_COUNT_DISTINCT(__p0_)", ((1, 100),), ((1, 100),), True),
        ("APPROX_COUNT_DISTINCT(__p0_)", ((1, 100),), ((1, 104),), True),
        ("APPROX_COUNT_DISTINCT(__p0_)", ((1, 100),), ((1, 106),), False),
        ("APPROX_COUNT_DISTINCT(__p0_, 0.01)", ((1, 100),), ((1, 104),), False),
        ("APPROX_COUNT_DISTINCT(__p0_)", ((1, 0),), ((1, None),), False),
        # percentile_approx: the value at rank ceil(p * n), give or take n / accuracy ranks
        ("PERCENTILE_APPROX(__p0_, 0.5)", ((1, [1, 2, 3, 4]),), ((1, 2),), True),
        ("PERCENTILE_APPROX(__p0_, 0.5)", ((1, [1, 2, 3, 4]),), ((1, 3),), False),
        ("PERCENTILE_APPROX(__p0_, 0.5)", ((1, [1, 2, 3, 4]),), ((1, 2.5),), False),
        ("PERCENTILE_APPROX(__p0_, 0.5, 2)", ((1, [1, 2, 3, 4]),), ((1, 4),), True),
        ("PERCENTILE_APPROX(__p0_, 0.5)", ((1, []),), ((1, None),), True),
        ("PERCENTILE_APPROX(__p0_, 0.5)", ((1, [1, 2]),), ((2, 1),), False),
    ],
)
def test_an_estimate_is_checked_against_the_exact_answer_within_its_error_bound(
    sql: str, exact: tuple, duck: tuple, within: bool
) -> None:
    from tests.differential import Answer, Template, _outside_error_bound

    t = Template("aggregate", sql, ("integer",), approximate=True)
    found = _outside_error_bound(t, _exact(exact), Answer(None, ("integer", "integer"), duck))
    assert (found is None) is within, found


def test_every_approximate_name_holds_a_marker_so_the_text_check_never_skips_one() -> None:
    """SQL without any marker is not parsed (a cache hit asks for every answer): every
    approximate function's name, and every name sqlglot reads as an approximate aggregate,
    must hold one, or its answers would lose their `approximate` flag."""
    from sqlglot.dialects.databricks import Databricks

    from sqlsafety.approximate import _MARKERS, APPROXIMATE_FUNCTIONS

    parsed_as_approximate = [
        name
        for name in Databricks.parser_class.FUNCTIONS
        if _name_of(name) in APPROXIMATE_FUNCTIONS
    ]
    assert parsed_as_approximate  # the check below looks at something
    for name in [*APPROXIMATE_FUNCTIONS, *parsed_as_approximate]:
        assert any(m in name.lower() for m in _MARKERS), name


def _name_of(function: str) -> str | None:
    from sqlglot import parse_one

    from sqlsafety.approximate import _name

    try:
        call = parse_one(f"SELECT {function}(x, 0.5)", read="databricks").expressions[0]
    except Exception:
        return None
    return _name(call)


def test_the_same_sql_is_answered_without_parsing_it_again() -> None:
    from sqlsafety import approximate as a

    sql = f"SELECT approx_count_distinct(device_id) AS n FROM {T} /* memo */"
    first = approximation(sql)
    before = a._approximation.cache_info().hits
    assert approximation(sql) is first
    assert a._approximation.cache_info().hits == before + 1
    assert approximation(f"SELECT count(*) AS n FROM {T}") == Approximation()
