"""The semantics set (tests/fixtures/fidelity/semantics.sql): model-style queries in
families the fidelity corpus did not have (money rounding, NULLs in aggregates and nested
values, max_by/min_by, ANSI runtime errors, text rendering, lambdas, date arithmetic,
regexp back-references, NULL ordering, implicit casts). Each runs through the production
path (the safety layer's checked SQL; the embedded DuckDB warehouse with the committed
verified set) and on local Spark (ANSI, UTC): no silent difference. Either both answer
the same (result types, values, NULLs, in order when ordered), or both fail (an ANSI
runtime error on Spark is an error on the embedded engine too), or the embedded engine
refuses by name ("not supported on the embedded engine"). (That the safety layer's
re-render means on Spark what the text as written means: tests/integration/
test_rerender_meaning.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from adapters.duckdb_warehouse import DuckDBWarehouse
from adapters.lakehouse import TABLES
from sqlsafety import check_sql
from tests import differential as d
from tests.integration.test_fidelity import QUERIES as CORPUS
from tests.integration.test_fidelity import Query, load_corpus
from tests.support import spark as sh

SET = load_corpus(d.SEMANTICS)
FAMILIES = {
    "money",
    "nulls",
    "max_by",
    "ansi",
    "text",
    "lambda",
    "dates",
    "regexp",
    "ordering",
    "compare",
}


def checked(q: Query) -> str:
    return check_sql(q.sql, dialect="databricks", allowed_tables=TABLES).sql


def test_the_set_is_broad_and_passes_the_safety_layer() -> None:
    assert len(SET) >= 60 and len({q.id for q in SET}) == len(SET)
    assert {q.family for q in SET} == FAMILIES
    assert not {q.id for q in SET} & {q.id for q in CORPUS}
    for q in SET:
        checked(q)  # honest SQL: the safety layer lets every query through


@pytest.fixture(scope="module")
def warehouse() -> Iterator[DuckDBWarehouse]:
    wh = DuckDBWarehouse(now=sh.SPARK_NOW)  # the committed verified set: production
    yield wh
    wh.close()


@pytest.mark.slow
def test_no_silent_difference_on_the_production_path(
    spark: Any, warehouse: DuckDBWarehouse
) -> None:
    differences, ran = {}, []
    for q in SET:
        sql = checked(q)
        spark_answer = d.spark_answer(spark, sql)
        duck_answer = d.duckdb_answer(warehouse, sql)
        diff = d.query_difference(spark_answer, duck_answer, sql)
        if diff:
            differences[q.id] = f"{diff}\n{sql}"
        elif not (duck_answer.error and d.REFUSAL in duck_answer.error):
            ran.append(q.id)
    assert differences == {}, "silent differences:\n" + "\n".join(
        f"{k}: {v}" for k, v in differences.items()
    )
    # not vacuous: the embedded engine answers a good part of the set itself
    assert len(ran) >= 20, ran
