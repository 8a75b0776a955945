"""The safety layer's re-render never changes what Databricks would answer (issue 22).

Every query of the fidelity sets (tests/fixtures/fidelity/*.sql) and every Databricks
query the safety fixtures admit over the demo tables (tests/fixtures/safety/: the honest
SQL each rule lets through) runs on local Spark (ANSI, UTC; the one session of the
`spark` fixture) twice: as written, and as the safety layer re-renders it (what runs on
Databricks). Both must give the same answer (result types, rows, in order when ordered),
or both must fail: a construct Spark rejects is never normalised into one it accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adapters.lakehouse import TABLES
from sqlsafety import SafetyViolation, check_sql
from tests import differential as d
from tests.integration.test_fidelity import load_corpus
from tests.unit.test_sqlsafety_rules import ALL_CASES

FIDELITY = Path(__file__).parents[1] / "fixtures" / "fidelity"


def fidelity_queries() -> dict[str, str]:
    return {
        f"{path.stem}:{q.id}": q.sql
        for path in sorted(FIDELITY.glob("*.sql"))
        for q in load_corpus(path)
    }


def safety_queries() -> dict[str, str]:
    """The admitted Databricks fixtures that read only the demo tables as they are (not a
    random sample: its rows differ run to run)."""
    return {
        f"safety:{c.where}": c.sql
        for c in ALL_CASES
        if c.allowed and c.dialect == "databricks" and not {"schema", "allowed"} & c.meta.keys()
        if "tablesample" not in c.sql.lower()
    }


# the row cap the safety layer adds is its own business (a bound, not a meaning): compared
# with a cap no query here reaches (Spark sizes a top-k buffer by it: not 10**9)
NO_CAP = 1_000_000
# Spark itself failing (the JVM gone, out of memory) is not an answer: never "both failed"
HARNESS_FAILURE = ("An error occurred while calling", "Connection refused", "OutOfMemoryError")


def rerendered(sql: str) -> str | None:
    try:
        return check_sql(sql, dialect="databricks", allowed_tables=TABLES, max_rows=NO_CAP).sql
    except SafetyViolation:  # admitted with a fixture's own schema or limits only
        return None


def test_the_sets_are_broad() -> None:
    fidelity, safety = fidelity_queries(), safety_queries()
    assert len(fidelity) >= 250 and len(safety) >= 40
    assert all(rerendered(sql) is not None for sql in fidelity.values())
    assert sum(rerendered(sql) is not None for sql in safety.values()) >= 40


def meaning_changed(spark: Any, written: str, checked: str, *, digest: bool = False) -> str | None:
    """None when `checked` answers on Spark what `written` answers (or both fail). With
    `digest`, for queries of many rows: the result types, the row count and an order-free
    checksum of the rows (a sum of xxhash64), not every row brought to Python."""
    if digest:
        original, rendered = _digest(spark, written), _digest(spark, checked)
        if original.error is None and rendered.error is None:
            return d.disagreement(original, rendered)
    original = d.spark_answer(spark, written)
    rendered = d.spark_answer(spark, checked)
    for answer in (original, rendered):
        assert not any(m in (answer.error or "") for m in HARNESS_FAILURE), answer.error
    if original.error or rendered.error:
        return None if original.error and rendered.error else d.disagreement(original, rendered)
    return d.query_difference(original, rendered, written)


def spelled_alike(written: str, checked: str) -> bool:
    """Whether Spark reads the two texts as one query: the same tokens in the same order
    (keywords and identifiers compared case-insensitively, as Spark reads them; string and
    number literals by their exact spelling, quotes and escapes included: `'a\\'b'` and
    `'a''b'` are not alike), whatever the whitespace and comments (a hint is a token), and
    the row cap the safety layer appended (NO_CAP) set aside. Such a pair cannot answer
    differently: it is not run."""
    from sqlglot.dialects.databricks import Databricks
    from sqlglot.tokens import TokenType

    literal = {TokenType.STRING, TokenType.NUMBER, TokenType.NATIONAL_STRING}

    def spelling(sql: str) -> list[tuple[Any, str]]:
        return [
            (t.token_type, sql[t.start : t.end + 1] if t.token_type in literal else t.text.lower())
            for t in Databricks().tokenize(sql)
        ]

    try:
        a, b = spelling(written), spelling(checked)
    except Exception:  # a text sqlglot cannot tokenize: compared on Spark
        return False
    cap = [(TokenType.LIMIT, "limit"), (TokenType.NUMBER, str(NO_CAP))]
    if b[-2:] == cap and a[-2:] != cap:
        b = b[:-2]
    return a == b


QUERIES = {**fidelity_queries(), **safety_queries()}
RERENDERED = {
    name: (sql, checked)
    for name, sql in QUERIES.items()
    if (checked := rerendered(sql)) is not None and not spelled_alike(sql, checked)
}


def test_most_queries_are_rerendered() -> None:
    """(Re-renders Spark reads as the written query are not run: about three in four.)"""
    assert len(RERENDERED) >= 80, len(RERENDERED)


@pytest.mark.parametrize(
    ("written", "checked", "alike"),
    [
        ("select a from t -- why\n", "SELECT a FROM t", True),
        ("select `a` from T", "SELECT `A` FROM t", True),
        ("SELECT a FROM t", f"SELECT a FROM t LIMIT {NO_CAP}", True),
        ("SELECT a FROM t LIMIT 5", "SELECT a FROM t LIMIT 5", True),
        ("SELECT 'a\\'b' AS s", "SELECT 'a''b' AS s", False),  # Spark: 'a' 'b' is 'ab'
        ("SELECT 'x' AS s", 'SELECT "x" AS s', False),
        (
            "SELECT timestampadd(FORTNIGHT, 1, t) FROM t",
            "SELECT timestampadd(WEEK, 2, t) FROM t",
            False,
        ),
        ("SELECT 1.50 AS n", "SELECT 1.5 AS n", False),
        ("SELECT /*+ REPARTITION(2) */ a FROM t", "SELECT a FROM t", False),
        ("SELECT a FROM t LIMIT 5", f"SELECT a FROM t LIMIT {NO_CAP}", False),
    ],
)
def test_only_texts_spark_reads_alike_are_not_run(written: str, checked: str, alike: bool) -> None:
    assert spelled_alike(written, checked) is alike


def _digest(spark: Any, sql: str) -> d.Answer:
    from tests.support.spark import for_spark

    text = sql.strip().rstrip(";")
    try:
        types = tuple(f.dataType.simpleString() for f in spark.sql(for_spark(text)).schema.fields)
    except Exception as e:  # Spark rejects the query: compared in full
        return d.Answer(error=str(e)[:160])
    sums = d.spark_answer(spark, f"SELECT count(*), sum(xxhash64(*)) FROM (\n{text}\n) AS q")
    return d.Answer(sums.error, types, sums.rows)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RERENDERED))
def test_the_rerender_never_changes_what_spark_answers(name: str, spark: Any) -> None:
    written, checked = RERENDERED[name]
    diff = meaning_changed(spark, written, checked, digest=name.startswith("safety:"))
    assert diff is None, f"{name}: {diff}\n{written}\n->\n{checked}"


@pytest.mark.slow
def test_a_changed_meaning_is_caught(spark: Any) -> None:
    """The comparison is not vacuous: a re-render that normalised a unit Spark rejects,
    or changed a value, is a difference."""
    table = "main.claims.claim_events"
    ts = "TIMESTAMP '2026-01-31 10:00:00'"
    assert meaning_changed(  # a unit Spark rejects, normalised into one it reads
        spark,
        f"SELECT timestampadd(FORTNIGHT, 1, {ts}) AS t",
        f"SELECT timestampadd(WEEK, 2, {ts}) AS t",
    )
    assert meaning_changed(spark, "SELECT 7 DIV 2 AS q", "SELECT 7 / 2 AS q")
    assert meaning_changed(spark, "SELECT 1 AS q", "SELECT 1 AS q") is None
    rows = f"SELECT region FROM {table}"
    assert meaning_changed(spark, rows, f"{rows} WHERE region <> 'west'", digest=True)
    assert meaning_changed(spark, rows, f"SELECT upper(region) AS region FROM {table}", digest=True)
    assert meaning_changed(spark, rows, f"{rows} ORDER BY region", digest=True) is None
