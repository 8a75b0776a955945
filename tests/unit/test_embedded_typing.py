"""The embedded rule's typing (adapters/embedded_rule.py) through CTEs, subqueries,
derived-table column aliases, UNION branches and CASE/COALESCE results: the argument type
a construct is keyed by is the one Spark gives it, so a DECIMAL and a DOUBLE column lead
to different decisions; an unknown type is refused."""

from __future__ import annotations

import pytest

from adapters.embedded_refusals import EmbeddedUnsupported
from adapters.embedded_rule import VerifiedSet, check_verified, constructs, widen
from adapters.transpile import parse_databricks, to_duckdb

EVENTS = "main.claims.claim_events"
# round(decimal, 2) is exact on both engines; round(double, 2) differs at ties (0.285)
ROUND_DECIMAL_ONLY = VerifiedSet(
    results={
        "round(decimal, 2)": "decimal",
        "cast(decimal, AS DOUBLE)": "double",
        "avg(decimal)": "decimal",
        "sum(decimal)": "decimal",
        "case(decimal)": "decimal",
        "coalesce(decimal)": "decimal",
        "case(double)": "double",
        ">(decimal, integer)": "boolean",
        "upper(string)": "string",
        "cast(integer, AS STRING)": "string",
    }
)


def keys(sql: str) -> set[str]:
    return {c.key for c in constructs(parse_databricks(sql), ROUND_DECIMAL_ONLY.results)}


def runs(sql: str) -> bool:
    try:
        check_verified(parse_databricks(sql), ROUND_DECIMAL_ONLY)
    except EmbeddedUnsupported:
        return False
    return True


DECIMAL_SOURCES = {
    "cte": f"WITH t AS (SELECT amount AS v FROM {EVENTS}) SELECT round(v, 2) FROM t",
    "cte of a cte": f"WITH a AS (SELECT amount FROM {EVENTS}), t AS (SELECT amount AS v FROM a) "
    "SELECT round(v, 2) FROM t",
    "subquery": f"SELECT round(v, 2) FROM (SELECT amount AS v FROM {EVENTS}) s",
    "derived-table column alias": f"SELECT round(v, 2) FROM (SELECT amount FROM {EVENTS}) s(v)",
    "union of decimals": f"SELECT round(v, 2) FROM (SELECT amount AS v FROM {EVENTS} "
    f"UNION ALL SELECT amount FROM {EVENTS}) u",
    "aggregate in a cte": f"WITH t AS (SELECT region, sum(amount) AS v FROM {EVENTS} GROUP BY 1) "
    "SELECT round(v, 2) FROM t",
    # sqlglot types avg(decimal) as a DOUBLE; Spark (and the verified set) as a DECIMAL
    "avg in a cte": f"WITH t AS (SELECT region, avg(amount) AS v FROM {EVENTS} GROUP BY 1) "
    "SELECT round(v, 2) FROM t",
    "case in a cte": f"WITH t AS (SELECT CASE WHEN amount > 0 THEN amount END AS v FROM {EVENTS}) "
    "SELECT round(v, 2) FROM t",
    "coalesce in a cte": f"WITH t AS (SELECT coalesce(amount, amount) AS v FROM {EVENTS}) "
    "SELECT round(v, 2) FROM t",
}
DOUBLE_SOURCES = {
    "cte": f"WITH t AS (SELECT CAST(amount AS DOUBLE) AS v FROM {EVENTS}) SELECT round(v, 2) FROM t",
    "subquery": f"SELECT round(v, 2) FROM (SELECT CAST(amount AS DOUBLE) AS v FROM {EVENTS}) s",
    "derived-table column alias": f"SELECT round(v, 2) FROM (SELECT CAST(amount AS DOUBLE) "
    f"FROM {EVENTS}) s(v)",
    # a DECIMAL branch and a DOUBLE branch: Spark widens the column to DOUBLE
    "union of a decimal and a double": f"SELECT round(v, 2) FROM (SELECT amount AS v FROM {EVENTS}"
    f" UNION ALL SELECT CAST(amount AS DOUBLE) FROM {EVENTS}) u",
    "union, the double first": f"SELECT round(v, 2) FROM (SELECT CAST(amount AS DOUBLE) AS v "
    f"FROM {EVENTS} UNION ALL SELECT amount FROM {EVENTS}) u",
    "case in a cte": f"WITH t AS (SELECT CASE WHEN amount > 0 THEN CAST(amount AS DOUBLE) END AS v"
    f" FROM {EVENTS}) SELECT round(v, 2) FROM t",
}


@pytest.mark.parametrize("sql", DECIMAL_SOURCES.values(), ids=DECIMAL_SOURCES.keys())
def test_a_decimal_column_of_a_cte_or_subquery_is_a_decimal(sql: str) -> None:
    assert "round(decimal, 2)" in keys(sql)
    assert runs(sql)


@pytest.mark.parametrize("sql", DOUBLE_SOURCES.values(), ids=DOUBLE_SOURCES.keys())
def test_a_double_column_of_a_cte_or_subquery_is_a_double_and_refused(sql: str) -> None:
    assert "round(double, 2)" in keys(sql) and "round(decimal, 2)" not in keys(sql)
    assert not runs(sql)


def test_a_union_of_text_and_numbers_is_of_unknown_type_and_refused() -> None:
    sql = (
        f"SELECT upper(v) FROM (SELECT region AS v FROM {EVENTS} "
        f"UNION ALL SELECT event_id FROM {EVENTS}) u"
    )
    assert "upper(?)" in keys(sql)
    with pytest.raises(EmbeddedUnsupported, match="unknown type"):
        check_verified(parse_databricks(sql), ROUND_DECIMAL_ONLY)


def test_a_string_column_of_a_cte_stays_a_string() -> None:
    sql = f"WITH t AS (SELECT CAST(event_id AS STRING) AS v FROM {EVENTS}) SELECT upper(v) FROM t"
    assert "upper(string)" in keys(sql) and runs(sql)


@pytest.mark.parametrize(
    ("families", "widened"),
    [
        (["integer", "decimal"], "decimal"),
        (["decimal", "double"], "double"),
        (["integer", "double"], "double"),
        (["null", "date"], "date"),
        (["string", "string"], "string"),
        (["string", "integer"], None),
        (["date", "timestamp"], None),
        (["decimal", None], None),
    ],
)
def test_set_operation_branches_widen_as_spark_widens_them(
    families: list[str | None], widened: str | None
) -> None:
    assert widen(families) == widened


def test_avg_of_a_decimal_of_unknown_precision_is_refused_not_run_as_a_double() -> None:
    """avg over a CTE's avg(decimal): the rule knows it is a DECIMAL, not its precision, so
    the translation cannot give Spark's DECIMAL(p + 4, s + 4): refused."""
    nested = (
        f"WITH t AS (SELECT region, avg(amount) AS v FROM {EVENTS} GROUP BY 1) SELECT avg(v) FROM t"
    )
    with pytest.raises(EmbeddedUnsupported, match="DECIMAL of unknown precision"):
        to_duckdb(nested)
    plain = f"WITH t AS (SELECT region, amount AS v FROM {EVENTS}) SELECT avg(v) FROM t"
    assert "AS DECIMAL(16, 6)" in to_duckdb(plain)


def test_lateral_view_columns_are_the_element_and_an_int_position() -> None:
    """sqlglot types a LATERAL VIEW's columns as the exploded array; Spark: its element, and
    posexplode's position an INT (so ORDER BY either is not 'an ORDER BY over an array')."""
    sql = (
        "SELECT pos, upper(part) AS u FROM main.claims.claim_events "
        "LATERAL VIEW posexplode(split(claim_id, '-')) t AS pos, part ORDER BY pos, part"
    )
    keys = {c.key for c in constructs(parse_databricks(sql), {})}
    assert "upper(string)" in keys and not any("array<string>)" in k for k in keys if "upper" in k)
    to_duckdb(sql)  # runs: every key is verified
    exploded = (
        "SELECT w FROM main.claims.claim_events LATERAL VIEW explode(split(region, 'e')) t AS w"
    )
    assert to_duckdb(f"{exploded} ORDER BY w")
