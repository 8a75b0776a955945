"""The fidelity suite: for every query of tests/fixtures/fidelity/corpus.sql (model-style
Databricks SQL), the embedded DuckDB warehouse either returns Spark's rows or refuses with
a `databricks_error` that names the construct it does not support. (That the safety
layer's re-render means on Spark what the text means: tests/integration/
test_rerender_meaning.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from adapters.duckdb_warehouse import DuckDBWarehouse
from adapters.lakehouse import TABLES
from domain.failures import FailureKind, WarehouseFailure
from sqlsafety import check_sql
from tests.support import spark as sh

CORPUS = Path(__file__).parents[1] / "fixtures" / "fidelity" / "corpus.sql"
FAMILIES = {
    "datetime",
    "aggregates",
    "windows",
    "strings",
    "arrays",
    "json",
    "casts",
    "ctes",
    "joins",
}
UNSUPPORTED = "not supported on the embedded engine"


@dataclass(frozen=True)
class Query:
    id: str
    family: str
    sql: str
    refused: str | None  # what the embedded engine's refusal must name, if it refuses


def load_corpus(path: Path = CORPUS) -> list[Query]:
    out = []
    for block in path.read_text().split("\n\n"):
        meta: dict[str, str] = {}
        sql = []
        for line in block.strip().splitlines():
            if line.startswith("# "):
                key, sep, value = line[2:].partition(": ")
                if sep:
                    meta[key] = value.strip()
            else:
                sql.append(line)
        if "id" not in meta:
            continue
        embedded = meta.get("embedded", "")
        refused = (
            embedded.removeprefix("refused ").strip() if embedded.startswith("refused") else None
        )
        out.append(Query(meta["id"], meta["family"], "\n".join(sql), refused))
    return out


QUERIES = load_corpus()
IDS = [q.id for q in QUERIES]


def checked(q: Query) -> str:
    return check_sql(q.sql, dialect="databricks", allowed_tables=TABLES).sql


def test_corpus_is_broad_and_allowed() -> None:
    assert len(QUERIES) >= 80 and len(set(IDS)) == len(IDS)
    assert {q.family for q in QUERIES} == FAMILIES
    for q in QUERIES:
        checked(q)  # every corpus query is honest SQL the safety layer lets through


def test_corpus_calls_every_function_the_safety_layer_admits() -> None:
    """Every Databricks function name the allow lists admit is called by a corpus query,
    so each one is proven on Spark and on the embedded engine (same rows, or a refusal)."""
    from sqlglot import exp

    from sqlsafety.functions import ANONYMOUS_ALLOWED, DATABRICKS_NAMES
    from sqlsafety.prepare import ENGINES, _known_function_names, prepare

    known = {n.lower() for n in _known_function_names(ENGINES["databricks"])}
    admitted = (DATABRICKS_NAMES & known) | ANONYMOUS_ALLOWED["databricks"]
    called: set[str] = set()
    for q in QUERIES:
        check = prepare(q.sql, dialect="databricks", allowed=frozenset(), max_rows=10)
        called |= set(check.called)
        called |= {n.name.lower() for n in check.by_type.get(exp.Anonymous, [])}
    # a 3-argument DATEDIFF/DATE_DIFF is read as TIMESTAMPDIFF before parsing
    text = " ".join(q.sql.lower() for q in QUERIES)
    called |= {n for n in ("datediff", "date_diff") if f"{n}(" in text}
    assert admitted - called == set()
    assert not DATABRICKS_NAMES - known - ANONYMOUS_ALLOWED["databricks"], "names nothing checks"


# ------------------------------------------------------------------ on Spark (slow)


@pytest.fixture(scope="module")
def reference(spark: Any) -> dict[str, list[list[Any]]]:
    """Spark's rows for each query as written, computed once."""
    return {}


def spark_answer(spark: Any, cache: dict[str, list[list[Any]]], q: Query) -> list[list[Any]]:
    if q.id not in cache:
        cache[q.id] = sh.spark_rows(spark, q.sql)[1]
    return cache[q.id]


@pytest.fixture(scope="module")
def warehouse() -> Iterator[DuckDBWarehouse]:
    wh = DuckDBWarehouse(now=sh.SPARK_NOW)
    yield wh
    wh.close()


@pytest.mark.slow
@pytest.mark.parametrize("q", QUERIES, ids=IDS)
async def test_embedded_warehouse_matches_spark_or_refuses(
    q: Query, spark: Any, reference: dict[str, list[list[Any]]], warehouse: DuckDBWarehouse
) -> None:
    sql = checked(q)
    if q.refused is not None:
        with pytest.raises(WarehouseFailure) as info:
            await warehouse.execute(sql, max_rows=10_000)
        assert info.value.kind is FailureKind.databricks_error
        assert UNSUPPORTED in info.value.detail and q.refused in info.value.detail, (
            info.value.detail
        )
        return
    result = await warehouse.execute(sql, max_rows=10_000)
    duck = [[sh.normalize_value(row[c.name]) for c in result.columns] for row in result.rows]
    expected = spark_answer(spark, reference, q)
    assert sh.row_differences(duck, expected) is None, (
        f"{q.id}: DuckDB differs from Spark: {sh.row_differences(duck, expected)}\n"
        f"{result.meta.get('duckdb_sql')}"
    )
