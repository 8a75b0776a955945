"""The embedded engine's rule (adapters/embedded_rule.py): construct keys, refusals, and
the committed verified set; the translation rules' independence of order."""

from __future__ import annotations

import json

import pytest

from adapters.embedded_refusals import EmbeddedUnsupported
from adapters.embedded_rule import (
    VERIFIED_PATH,
    VerifiedSet,
    check_verified,
    constructs,
    default_verified,
)
from adapters.transpile import parse_databricks, to_duckdb
from adapters.transpile_rules import RULES
from tests import differential

EVENTS = "FROM main.claims.claim_events"


def keys(sql: str) -> set[str]:
    return {c.key for c in constructs(parse_databricks(sql), default_verified().results)}


@pytest.mark.parametrize(
    ("sql", "key"),
    [
        (f"SELECT date_add(event_ts, 1) {EVENTS}", "date_add(timestamp, integer, DAY)"),
        (f"SELECT amount / 2 {EVENTS}", "/(decimal, integer)"),
        (f"SELECT event_id * 1.5 {EVENTS}", "*(integer, decimal)"),  # 1.5 is a DECIMAL in Spark
        (f"SELECT event_id * 1e3 {EVENTS}", "*(integer, double)"),
        (f"SELECT date_format(event_ts, 'yyyy-MM') {EVENTS}", "date_format(timestamp, 'yyyy-MM')"),
        (f"SELECT CAST(region AS INT) {EVENTS}", "cast(string, AS INT)"),
        (f"SELECT round(amount, 2) {EVENTS}", "round(decimal, 2)"),
        (f"SELECT coalesce(region, channel, 'x') {EVENTS}", "coalesce(string)"),
    ],
)
def test_a_construct_is_keyed_by_its_argument_types(sql: str, key: str) -> None:
    assert key in keys(sql)


def test_an_unverified_construct_is_refused_by_name() -> None:
    sql = f"SELECT upper(region) {EVENTS}"
    tree = parse_databricks(sql)
    check_verified(tree, VerifiedSet(results={"upper(string)": "string"}))
    with pytest.raises(EmbeddedUnsupported) as info:
        check_verified(tree, VerifiedSet(results={"upper(integer)": "string"}))
    assert "upper(string) is not supported" in str(info.value)
    assert "runs on Databricks" in str(info.value)


def test_the_same_function_over_another_type_family_is_refused() -> None:
    verified = default_verified().results
    assert "avg(decimal)" in verified  # the widgets' average of a money column
    assert "/(decimal, integer)" not in verified  # DuckDB divides a DECIMAL as a DOUBLE
    with pytest.raises(EmbeddedUnsupported, match=r"/\(decimal, integer\)"):
        to_duckdb(f"SELECT amount / 3 {EVENTS}")


def test_an_argument_of_unknown_type_is_refused() -> None:
    sql = "SELECT upper(x) FROM (SELECT explode(from_json(attributes, 'ARRAY<STRING>')) AS x FROM main.claims.claim_events)"
    tree = parse_databricks(sql)
    with pytest.raises(EmbeddedUnsupported):
        check_verified(tree, VerifiedSet(results={"upper(string)": "string"}))


def test_every_widget_runs_on_the_embedded_engine() -> None:
    for sql in differential.widget_sql():
        to_duckdb(sql)  # never refused: the demo dashboard's own SQL is verified


def test_the_verified_set_is_well_formed() -> None:
    data = json.loads(VERIFIED_PATH.read_text())
    assert data["verified"] and not set(data["verified"]) & set(data["refused"])
    assert all(isinstance(f, str) and f for f in data["verified"].values())


def test_no_two_translation_rules_rewrite_the_same_node() -> None:
    """So the order of RULES cannot matter (sqlglot optimizer style)."""
    for sql in differential.corpus_sql():
        tree, _ = check_verified(parse_databricks(sql), differential.UNGATED)
        for node in tree.walk():
            changed = []
            for rule in RULES:
                try:
                    if rule(node) is not node:
                        changed.append(rule.__name__)
                except EmbeddedUnsupported:
                    changed.append(rule.__name__)
            assert len(changed) <= 1, (changed, node.sql("databricks"))


def test_an_array_index_is_a_construct_keyed_by_its_types() -> None:
    """split(...)[2] and element_at(..., 3): Spark (ANSI) fails out of bounds, DuckDB
    gives NULL; the index is gated like a function, so only a verified key runs."""
    assert "[](array<string>, integer)" in keys(f"SELECT split(claim_id, '-')[2] {EVENTS}")
    assert "element_at(array<string>, integer)" in keys(
        f"SELECT element_at(split(claim_id, '-'), 3) {EVENTS}"
    )


def test_max_by_keeps_a_null_value_at_the_greatest_key() -> None:
    sql = to_duckdb(
        f"SELECT max_by(amount, event_id), min_by(amount, event_id) {EVENTS}",
        VerifiedSet(
            results={"max_by(decimal, integer)": "decimal", "min_by(decimal, integer)": "decimal"}
        ),
    )
    assert "ARG_MAX_NULL(" in sql and "ARG_MIN_NULL(" in sql


@pytest.mark.parametrize("replacement", ["'$2-$1'", "'\\\\1'", "region"])
def test_regexp_replace_with_a_group_reference_is_refused(replacement: str) -> None:
    """Java's `$1` is a group in Spark's replacement and literal text in RE2's."""
    verified = VerifiedSet(results={}, everything=True)
    with pytest.raises(EmbeddedUnsupported, match="group reference"):
        to_duckdb(
            f"SELECT regexp_replace(claim_id, '(CLM)-(\\\\d+)', {replacement}) {EVENTS}", verified
        )
    to_duckdb(f"SELECT regexp_replace(claim_id, '[0-9]', '') {EVENTS}", verified)


def test_unpivot_is_refused_by_name() -> None:
    sql = (
        "SELECT device_id, k, v FROM (SELECT device_id, manufacturer, model FROM "
        "main.claims.devices) UNPIVOT (v FOR k IN (manufacturer, model))"
    )
    with pytest.raises(EmbeddedUnsupported, match=r"^UNPIVOT .* runs on Databricks"):
        to_duckdb(sql)


def test_regexp_extract_counts_by_its_group_and_like_by_nothing_but_types() -> None:
    keys = {c.key for c in constructs(parse_databricks(_REGEXP_SQL), {})}
    assert "regexp_extract(string, '([0-9]+)', 1)" in keys
    assert "like(string, string)" in keys
    with pytest.raises(EmbeddedUnsupported, match=r"regexp_like\(string, 'ment\$'\)"):
        to_duckdb("SELECT message RLIKE 'ment$' AS m FROM main.ops.alerts")


_REGEXP_SQL = (
    "SELECT regexp_extract(message, '([0-9]+)', 1) AS n, message LIKE '%a\\\\_b%' AS l "
    "FROM main.ops.alerts"
)
