"""The row-filter transform: every read of a filtered table goes through its filter,
whatever the query does to hide it (aliases, CTEs named like the table, subqueries,
UNION, self-joins, quoting, letter case)."""

from __future__ import annotations

import re

import pytest
from sqlglot import exp, parse_one

from domain.access import TableFilter
from sqlsafety import SafetyViolation, check_sql
from sqlsafety.names import parse_entry, qualify, table_parts
from sqlsafety.row_filters import apply_row_filters
from sqlsafety.rules import is_cte_reference

CLAIMS = "main.claims.claim_events"
ALERTS = "main.ops.alerts"
DEVICES = "main.claims.devices"
ALLOWED = frozenset({CLAIMS, ALERTS, DEVICES})
WEST = TableFilter(CLAIMS, "region", ("midwest", "west"))
NO_ALERTS = TableFilter(ALERTS, "region", ())
FILTERS = (WEST, NO_ALERTS)


def reads(sql: str) -> list[tuple[tuple[str, ...], exp.Table]]:
    """Every real table read in `sql` (CTE references set aside), with its node."""
    out = []
    for node in parse_one(sql, read="databricks").find_all(exp.Table):
        parts = table_parts(node, "databricks")
        assert parts is not None
        if len(parts) == 1 and is_cte_reference(node, parts[0], "databricks"):
            continue
        out.append((qualify(parts, "databricks"), node))
    return out


def filter_of(node: exp.Table) -> exp.Expr | None:
    """The WHERE of the derived table `node` stands in, if it is `SELECT * FROM node WHERE ...`."""
    frm = node.parent
    select = frm.parent if isinstance(frm, exp.From) else None
    if not isinstance(select, exp.Select) or not isinstance(select.parent, exp.Subquery):
        return None
    if select.args.get("joins") or len(select.expressions) != 1:
        return None
    if not isinstance(select.expressions[0], exp.Star):
        return None
    where = select.args.get("where")
    return where.this if where is not None else None


def assert_every_read_filtered(sql: str, filters: tuple[TableFilter, ...] = FILTERS) -> None:
    expected = {parse_entry(f.table, "databricks"): f for f in filters}
    seen = 0
    for name, node in reads(sql):
        f = expected.get(name)
        if f is None:
            continue
        seen += 1
        cond = filter_of(node)
        assert cond is not None, f"unfiltered read of {name} in {sql}"
        if not f.values:
            assert isinstance(cond, exp.Boolean) and not cond.this
        else:
            assert isinstance(cond, exp.In)
            assert cond.this.name == f.column
            assert sorted(v.this for v in cond.expressions) == list(f.values)
    assert seen, "the query read no filtered table"


def run(sql: str) -> tuple[str, str]:
    checked = check_sql(sql, allowed_tables=ALLOWED, row_filters=FILTERS, keep_unfiltered=True)
    lean = check_sql(sql, allowed_tables=ALLOWED, row_filters=FILTERS)
    assert lean.sql == checked.sql and lean.unfiltered_sql == ""
    return checked.sql, checked.unfiltered_sql


TRICKS = {
    "plain": f"SELECT region, count(*) FROM {CLAIMS} GROUP BY region",
    "alias": f"SELECT e.region FROM {CLAIMS} AS e",
    "alias_without_as": f"SELECT x.region FROM {CLAIMS} x",
    "alias_named_like_table": f"SELECT claim_events.region FROM {CLAIMS} AS claim_events",
    "upper_case": "SELECT region FROM MAIN.CLAIMS.CLAIM_EVENTS",
    "mixed_case_quoted": "SELECT region FROM `Main`.`Claims`.`Claim_Events`",
    "quoted_parts": "SELECT region FROM `main`.claims.`claim_events`",
    "cte_named_like_table": f"WITH claim_events AS (SELECT * FROM {CLAIMS}) SELECT * FROM claim_events",
    "cte_named_like_table_shadowing_filter": (
        f"WITH claim_events AS (SELECT * FROM {CLAIMS} WHERE region = 'northeast') "
        "SELECT region FROM claim_events"
    ),
    "nested_ctes": (
        f"WITH a AS (SELECT * FROM {CLAIMS}), b AS (SELECT * FROM a) SELECT count(*) FROM b"
    ),
    "subquery_in_from": f"SELECT * FROM (SELECT * FROM {CLAIMS}) AS s",
    "scalar_subquery": f"SELECT (SELECT count(*) FROM {CLAIMS}) AS n",
    "in_subquery": f"SELECT * FROM {DEVICES} d WHERE d.device_id IN (SELECT device_id FROM {CLAIMS})",
    "exists": (
        f"SELECT * FROM {DEVICES} d WHERE EXISTS "
        f"(SELECT 1 FROM {CLAIMS} c WHERE c.device_id = d.device_id)"
    ),
    "union": f"SELECT region FROM {CLAIMS} UNION ALL SELECT region FROM {ALERTS}",
    "union_distinct_same_table": (
        f"SELECT region FROM {CLAIMS} UNION SELECT region FROM {CLAIMS} WHERE region = 'south'"
    ),
    "intersect": f"SELECT region FROM {CLAIMS} INTERSECT SELECT region FROM {ALERTS}",
    "except": f"SELECT region FROM {DEVICES} d JOIN {CLAIMS} c ON d.device_id = c.device_id "
    f"EXCEPT SELECT region FROM {ALERTS}",
    "self_join": (
        f"SELECT a.region, b.region FROM {CLAIMS} a JOIN {CLAIMS} b ON a.claim_id = b.claim_id"
    ),
    "left_join_from_other_table": (
        f"SELECT d.device_id, c.region FROM {DEVICES} d LEFT JOIN {CLAIMS} c "
        "ON d.device_id = c.device_id"
    ),
    "full_table_name_column": f"SELECT main.claims.claim_events.region FROM {CLAIMS}",
    "qualified_star": f"SELECT e.* FROM {CLAIMS} e",
    "or_true_in_where": f"SELECT region FROM {CLAIMS} WHERE region = 'west' OR 1 = 1",
    "window": f"SELECT region, row_number() OVER (PARTITION BY region ORDER BY event_ts) FROM {CLAIMS}",
    "cte_used_twice": (
        f"WITH c AS (SELECT * FROM {CLAIMS}) SELECT * FROM c x JOIN c y ON x.claim_id = y.claim_id"
    ),
    "subquery_in_cte_in_subquery": (
        f"SELECT * FROM (WITH q AS (SELECT * FROM (SELECT * FROM {CLAIMS}) z) SELECT * FROM q) w"
    ),
}


@pytest.mark.parametrize("name", sorted(TRICKS))
def test_every_read_of_a_filtered_table_is_filtered(name: str) -> None:
    filtered, unfiltered = run(TRICKS[name])
    assert filtered != unfiltered
    assert_every_read_filtered(filtered)
    # the filtered SQL is itself a query the safety layer accepts
    check_sql(filtered, allowed_tables=ALLOWED)


@pytest.mark.parametrize("name", sorted(TRICKS))
def test_filtering_twice_stays_filtered(name: str) -> None:
    once, _ = run(TRICKS[name])
    twice, _ = run(once)
    assert_every_read_filtered(twice)


def test_unfiltered_tables_are_untouched() -> None:
    sql = f"SELECT manufacturer, count(*) FROM {DEVICES} GROUP BY manufacturer"
    filtered, unfiltered = run(sql)
    assert filtered == unfiltered


def test_no_filters_is_the_checked_sql() -> None:
    checked = check_sql(TRICKS["self_join"], allowed_tables=ALLOWED)
    assert checked.sql == checked.unfiltered_sql


def test_claim_values_are_literals_never_sql() -> None:
    evil = TableFilter(CLAIMS, "region", ("west') OR (1=1", "x'--"))
    checked = check_sql(TRICKS["plain"], allowed_tables=ALLOWED, row_filters=(evil,))
    where = parse_one(checked.sql, read="databricks").find(exp.In)
    assert where is not None
    assert sorted(v.this for v in where.expressions) == sorted(evil.values)
    assert not parse_one(checked.sql, read="databricks").find(exp.Or)


def test_empty_values_filter_every_row_out() -> None:
    sql, _ = run(f"SELECT count(*) FROM {ALERTS}")
    assert "WHERE FALSE" in sql


def test_alias_and_column_aliases_kept() -> None:
    sql, _ = run(f"SELECT e.region FROM {CLAIMS} AS e")
    tree = parse_one(sql, read="databricks")
    sub = tree.find(exp.Subquery)
    assert sub is not None and sub.alias == "e"


def test_a_cte_reference_is_not_rewritten_but_its_body_is() -> None:
    sql, _ = run(TRICKS["cte_named_like_table"])
    tree = parse_one(sql, read="databricks")
    outer_from = tree.args["from_"] if "from_" in tree.args else tree.args["from"]
    assert isinstance(outer_from.this, exp.Table)  # `FROM claim_events` (the CTE) stays
    assert_every_read_filtered(sql)


def test_transform_is_pure_on_a_given_tree() -> None:
    tree = parse_one(TRICKS["plain"], read="databricks")
    out = apply_row_filters(tree, (), dialect="databricks")
    assert out is tree
    assert out.sql("databricks") == parse_one(TRICKS["plain"], read="databricks").sql("databricks")


def test_unsafe_sql_is_still_refused_before_filters() -> None:
    with pytest.raises(SafetyViolation):
        check_sql(f"DELETE FROM {CLAIMS}", allowed_tables=ALLOWED, row_filters=FILTERS)


@pytest.mark.parametrize(
    "sql",
    [
        f"SELECT /*+ BROADCAST({CLAIMS}) */ count(*) FROM {CLAIMS}",
        f"SELECT /*+ BROADCAST(e) */ e.region FROM {CLAIMS} AS e JOIN {DEVICES} AS d ON e.device_id = d.device_id",
        f"SELECT w FROM {CLAIMS} LATERAL VIEW explode(split(region, 'e')) t AS w",
        f"SELECT * FROM (SELECT region, channel, amount FROM {CLAIMS}) PIVOT (sum(amount) FOR channel IN ('app'))",
        f"(SELECT region FROM {CLAIMS})",
    ],
)
def test_honest_constructs_stay_filtered(sql: str) -> None:
    """Hints, LATERAL VIEW, PIVOT and a parenthesized query: every real read is filtered,
    and a hint's table name is left alone (it reads nothing)."""
    checked = check_sql(sql, allowed_tables=ALLOWED, row_filters=FILTERS)
    tree = parse_one(checked.sql, read="databricks")
    for node in tree.find_all(exp.Table):
        if node.find_ancestor(exp.Hint) is None and qualify(
            table_parts(node, "databricks") or (), "databricks"
        ) == parse_entry(CLAIMS, "databricks"):
            assert filter_of(node) is not None, checked.sql
    assert checked.sql.count("'midwest', 'west'") >= 1
    assert "/*+ BROADCAST((" not in checked.sql


# ------------------------------------------------- operators that reshape the table read

# PIVOT / TABLESAMPLE written on a filtered table: the filter must sit beneath them, on the
# bare read, or a PIVOT naming a constant `region` passes every region's rows (issue 18)
RESHAPED = {
    "pivot_value_named_like_the_column": (
        f"SELECT region, count(*) FROM {CLAIMS} "
        "PIVOT (max('west') FOR region IN ('northeast' AS region)) GROUP BY region"
    ),
    "pivot_aggregate_named_like_the_column": (
        f"SELECT region FROM {CLAIMS} PIVOT (max('west') AS region FOR channel IN ('app'))"
    ),
    "pivot_lower_case_quoted": (
        "select `REGION` from `main`.`claims`.`claim_events` "
        "pivot (max('west') for Region in ('northeast' as `Region`))"
    ),
    "pivot_alias_before": (
        f"SELECT e.app FROM {CLAIMS} AS e PIVOT (count(*) FOR channel IN ('app' AS app))"
    ),
    "pivot_alias_after": (
        f"SELECT p.app FROM {CLAIMS} PIVOT (count(*) FOR channel IN ('app' AS app)) AS p"
    ),
    "pivot_alias_both": (
        f"SELECT p.app FROM {CLAIMS} AS e PIVOT (count(*) FOR channel IN ('app' AS app)) AS p"
    ),
    "pivot_in_cte": (
        f"WITH x AS (SELECT * FROM {CLAIMS} PIVOT (max('west') FOR region IN ('a' AS region))) "
        "SELECT region FROM x"
    ),
    "pivot_in_subquery": (
        f"SELECT s.region FROM (SELECT * FROM {ALERTS} "
        "PIVOT (max('west') FOR region IN ('a' AS region)) p) s"
    ),
    "pivot_in_in_subquery": (
        f"SELECT * FROM {DEVICES} d WHERE d.device_id IN (SELECT device_id FROM {CLAIMS} "
        "PIVOT (max('west') FOR region IN ('a' AS region)))"
    ),
    "tablesample_percent": f"SELECT region FROM {CLAIMS} TABLESAMPLE (10 PERCENT)",
    "tablesample_rows_alias": f"SELECT e.region FROM {CLAIMS} TABLESAMPLE (5 ROWS) AS e",
    "tablesample_bucket": f"SELECT region FROM {ALERTS} TABLESAMPLE (BUCKET 1 OUT OF 4)",
}


def assert_filter_on_the_bare_read(sql: str) -> None:
    """Every read of a filtered table is a bare name (no PIVOT, sample, join or alias on
    it) directly under its filter."""
    names = {parse_entry(f.table, "databricks") for f in FILTERS}
    for name, node in reads(sql):
        if name in names:
            extra = {k for k, v in node.args.items() if v} - {"this", "db", "catalog"}
            assert not extra, f"{name} read with {extra} under its filter: {sql}"
            assert filter_of(node) is not None, sql


@pytest.mark.parametrize("name", sorted(RESHAPED))
def test_the_filter_sits_beneath_what_reshapes_the_table(name: str) -> None:
    filtered, _ = run(RESHAPED[name])
    assert_filter_on_the_bare_read(filtered)
    assert_every_read_filtered(filtered)


@pytest.mark.parametrize(
    ("name", "kept"),
    [
        ("pivot_alias_before", ["AS e PIVOT("]),
        ("pivot_alias_after", [") AS p"]),
        ("pivot_alias_both", ["AS e PIVOT(", ") AS p"]),
        ("tablesample_rows_alias", ["TABLESAMPLE (5 ROWS)) AS e"]),
    ],
)
def test_aliases_around_a_pivot_or_sample_keep_their_place(name: str, kept: list[str]) -> None:
    """The alias after a PIVOT names the pivoted rows, the one before it the table: the
    re-render keeps each where it was (Spark checks the rows: test_row_filters_spark)."""
    filtered, _ = run(RESHAPED[name])
    for fragment in kept:
        assert fragment in filtered, filtered
    inner = re.search(r"\(SELECT \* FROM main\.claims\.claim_events WHERE [^)]*\)\)", filtered)
    assert inner is not None and "PIVOT" not in inner.group(0) and " AS p" not in inner.group(0)


@pytest.mark.parametrize(
    "sql",
    [
        # a parenthesized join hangs the second table on the first: a filter wrapped around
        # both would lose the second one's filter
        f"SELECT b.region FROM ({CLAIMS} AS a JOIN {ALERTS} AS b ON a.region = b.region)",
        f"SELECT a.region FROM ({ALERTS} AS a JOIN {DEVICES} AS d ON a.region = d.device_id)",
        f"SELECT c.region FROM ({CLAIMS} c LEFT JOIN {DEVICES} d ON c.device_id = d.device_id)",
    ],
)
def test_what_cannot_sit_above_the_filter_is_refused(sql: str) -> None:
    with pytest.raises(SafetyViolation) as err:
        check_sql(sql, allowed_tables=ALLOWED, row_filters=FILTERS)
    assert err.value.rule == "row_filter" and "directly" in err.value.reason
    check_sql(sql, allowed_tables=ALLOWED)  # unfiltered, nothing to refuse


def test_unpivot_stays_refused_under_filters() -> None:
    sql = f"SELECT region FROM {CLAIMS} UNPIVOT (v FOR region IN (channel, event_type))"
    with pytest.raises(SafetyViolation, match="UNPIVOT"):
        check_sql(sql, allowed_tables=ALLOWED, row_filters=FILTERS)
