"""Row filters on real Spark: a filtered statement means exactly the query over the rows
the caller may read, whatever reshapes the table (PIVOT, TABLESAMPLE, LATERAL VIEW,
aliases after a PIVOT), or it is refused with a reason.

The oracle: the statement with the row filters applied (what would run) gives the same
rows as the same checked statement, unfiltered, over a view that holds only the allowed
rows. An attack that renames or synthesises the filter column (a PIVOT naming a constant
`region`) fails it: its rows come from every region. Uses the shared `spark` fixture.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from domain.access import TableFilter
from sqlsafety import SafetyViolation, check_sql
from tests.support.spark import for_spark, spark_view_name

pytestmark = pytest.mark.slow

ALLOWED = {"main.claims.claim_events", "main.ops.alerts", "main.claims.devices"}
WEST = (
    TableFilter("main.claims.claim_events", "region", ("west",)),
    TableFilter("main.ops.alerts", "region", ("west",)),
)
CE = "main.claims.claim_events"

# the family: operators on the table read that rename or synthesise the filter column
ATTACKS = {
    "pivot_value_named_like_the_column": (
        f"SELECT region, count(*) AS n FROM {CE} "
        "PIVOT (max('west') FOR region IN ('northeast' AS region)) GROUP BY region"
    ),
    "pivot_aggregate_named_like_the_column": (
        f"SELECT region, count(*) AS n FROM {CE} "
        "PIVOT (max('west') AS region FOR channel IN ('app')) GROUP BY region"
    ),
    "pivot_quoted_other_case": (
        f"SELECT `REGION`, count(*) AS n FROM {CE} "
        "pivot (MAX('west') for Region in ('northeast' AS `Region`)) GROUP BY `REGION`"
    ),
    "pivot_in_a_cte": (
        f"WITH x AS (SELECT * FROM {CE} PIVOT (max('west') FOR region IN ('southeast' AS region))) "
        "SELECT region, count(*) AS n FROM x GROUP BY region"
    ),
    "pivot_in_a_subquery_with_alias": (
        f"SELECT s.region, count(*) AS n FROM (SELECT p.region FROM {CE} AS e "
        "PIVOT (max('west') FOR region IN ('midwest' AS region)) AS p) AS s GROUP BY s.region"
    ),
    "pivot_on_both_filtered_tables": (
        "SELECT region, count(*) AS n FROM main.ops.alerts "
        "PIVOT (max('west') FOR region IN ('northeast' AS region)) GROUP BY region"
    ),
    "tablesample_percent": (
        f"SELECT region, count(*) AS n FROM {CE} TABLESAMPLE (100 PERCENT) GROUP BY region"
    ),
    "tablesample_rows": f"SELECT count(*) AS n FROM {CE} TABLESAMPLE (50 ROWS)",
    "lateral_view_synthesising_the_column": (
        f"SELECT r, count(*) AS n FROM {CE} LATERAL VIEW explode(array(channel, 'west')) t AS r "
        "GROUP BY r"
    ),
    "unpivot_into_the_column": (
        f"SELECT region, count(*) AS n FROM {CE} "
        "UNPIVOT (v FOR region IN (channel, event_type)) GROUP BY region"
    ),
}

# honest queries: the filtered statement keeps their meaning
HONEST = {
    "pivot_over_a_subquery": (
        f"SELECT * FROM (SELECT channel, event_type FROM {CE}) "
        "PIVOT (count(*) FOR channel IN ('app', 'web'))"
    ),
    "pivot_alias_after": (
        "SELECT sum(p.app) AS app, sum(p.web) AS web FROM main.claims.claim_events "
        "PIVOT (count(*) AS n FOR channel IN ('app' AS app, 'web' AS web)) AS p"
    ),
    "pivot_alias_before_and_after": (
        f"SELECT p.event_type, sum(p.app) AS app FROM {CE} AS e "
        "PIVOT (count(*) FOR channel IN ('app' AS app, 'web' AS web)) AS p "
        "GROUP BY p.event_type"
    ),
    "pivot_alias_before": (
        f"SELECT event_type, sum(app) AS app FROM {CE} AS e "
        "PIVOT (sum(amount) FOR channel IN ('app' AS app)) GROUP BY event_type"
    ),
    "pivot_star_of_alias": (
        "SELECT p.* FROM (SELECT channel, event_type FROM main.claims.claim_events) "
        "PIVOT (count(*) FOR channel IN ('app' AS app, 'web' AS web)) AS p"
    ),
    "tablesample_with_alias": (
        f"SELECT e.channel, count(*) AS n FROM {CE} TABLESAMPLE (100 PERCENT) AS e "
        "GROUP BY e.channel"
    ),
    "lateral_view": (
        f"SELECT t.c, count(*) AS n FROM {CE} AS e LATERAL VIEW explode(array(e.channel)) t AS c "
        "GROUP BY t.c"
    ),
    "pivot_after_a_join_on_the_filtered_table": (
        "SELECT d.manufacturer, sum(app) AS app FROM main.claims.devices AS d JOIN "
        f"{CE} AS e ON d.device_id = e.device_id "
        "PIVOT (count(*) FOR channel IN ('app' AS app)) GROUP BY d.manufacturer"
    ),
    "pivot_after_a_join_from_the_filtered_table": (
        f"SELECT sum(app) AS app FROM {CE} AS e JOIN main.claims.devices AS d "
        "ON d.device_id = e.device_id PIVOT (count(*) FOR channel IN ('app' AS app))"
    ),
    "pivot_alerts_joined": (
        "SELECT d.manufacturer, sum(p.app) AS app FROM main.claims.devices AS d JOIN "
        f"(SELECT device_id, app FROM {CE} PIVOT (count(*) FOR channel IN ('app' AS app))) AS p "
        "ON d.device_id = p.device_id GROUP BY d.manufacturer"
    ),
}


def _rows(spark: Any, sql: str) -> list[tuple[Any, ...]]:
    return sorted((tuple(r) for r in spark.sql(sql).collect()), key=repr)


@pytest.fixture(scope="module")
def west_views(spark: Any) -> dict[str, str]:
    """{spark view of a filtered table: a view of its west rows only}."""
    views = {}
    for f in WEST:
        name = spark_view_name(f.table)
        spark.sql(
            f"CREATE OR REPLACE TEMP VIEW {name}__west AS SELECT * FROM {name} "
            f"WHERE {f.column} IN ('west')"
        )
        views[name] = f"{name}__west"
    return views


def _over_allowed_rows(sql: str, views: dict[str, str]) -> str:
    text = for_spark(sql)
    for name, west in views.items():
        text = re.sub(rf"\b{name}\b", west, text)
    return text


def _filtered_means_allowed_rows(spark: Any, views: dict[str, str], sql: str) -> None:
    try:
        filtered = check_sql(sql, allowed_tables=ALLOWED, row_filters=WEST)
    except SafetyViolation as exc:  # refused: with a reason, never run
        assert exc.reason, sql
        return
    unfiltered = check_sql(sql, allowed_tables=ALLOWED)
    expected = _rows(spark, _over_allowed_rows(unfiltered.sql, views))
    got = _rows(spark, for_spark(filtered.sql))
    assert got == expected, filtered.sql


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attacks_read_only_allowed_rows_or_are_refused(
    spark: Any, west_views: dict[str, str], attack: str
) -> None:
    _filtered_means_allowed_rows(spark, west_views, ATTACKS[attack])


@pytest.mark.parametrize("query", sorted(HONEST))
def test_honest_queries_keep_their_meaning(
    spark: Any, west_views: dict[str, str], query: str
) -> None:
    sql = HONEST[query]
    filtered = check_sql(sql, allowed_tables=ALLOWED, row_filters=WEST)  # not refused
    assert "IN ('west')" in filtered.sql
    _filtered_means_allowed_rows(spark, west_views, sql)
    assert _rows(spark, for_spark(filtered.sql)), "no rows: the comparison would prove little"


def test_spark_substitutes_variables_in_literals_and_the_check_refuses_them(spark: Any) -> None:
    """The attack is real: Spark replaces `${system:...}` inside a string literal before
    parsing. The check refuses every such query before it can run."""
    sql = f"SELECT '${{system:java.home}}' AS h FROM {CE} LIMIT 1"
    (row,) = spark.sql(for_spark(sql)).collect()
    assert row.h != "${system:java.home}" and "/" in row.h  # the driver's own setting
    with pytest.raises(SafetyViolation) as err:
        check_sql(sql, allowed_tables=ALLOWED)
    assert err.value.rule == "variable_substitution"


def test_spark_discloses_file_paths_through_metadata_and_the_check_refuses_them(
    spark: Any,
) -> None:
    sql = f"SELECT _metadata.file_path AS p FROM {CE} LIMIT 1"
    # the demo views hide it; a file-based table (here: the view's own file) shows it
    (path,) = spark.table(spark_view_name(CE)).inputFiles()
    (row,) = spark.sql(sql.replace(CE, f"parquet.`{path}`")).collect()
    assert row.p.endswith(".parquet")  # a storage path, not data
    with pytest.raises(SafetyViolation) as err:
        check_sql(sql, allowed_tables=ALLOWED)
    assert err.value.rule == "hidden_column"
