"""The gold set: questions, their gold SQL and the rows running it gives on the pinned demo data.

`evals/accuracy/gold.yaml` holds every question (`id`, `category`, `source`, `question`,
optional `notes`) with one gold answer, or several for an ambiguous question, each
`{sql, columns, rows}` and an optional `tolerance: {abs, rel}`. The SQL is hand-written;
`columns` and `rows` are what running it gives (`python -m evals.accuracy.gold --write`),
and tests/integration/test_accuracy_gold.py checks that they still are.

The demo data is pinned: the lakehouse is built for `PINNED_NOW`, the KPI history is seeded
up to it (its values depend only on the instant: adapters/pg_seed.py), and the service's
clock is set to it while the benchmark runs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import yaml

from domain.jsonsafe import json_safe
from evals.accuracy.scoring import GoldAnswer, Tolerance

if TYPE_CHECKING:
    from adapters.duckdb_warehouse import DuckDBWarehouse

PINNED_NOW = datetime(2026, 12, 1, tzinfo=UTC)
GOLD_FILE = Path(__file__).with_name("gold.yaml")
CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
MAX_GOLD_ROWS = 1000

Category = Literal[
    "single_metric",
    "breakdown",
    "time_window",
    "filter",
    "ranking",
    "ratio",
    "join",
    "ambiguous",
]
CATEGORIES: tuple[Category, ...] = get_args(Category)
Source = Literal["lakehouse", "kpi_history"]
SOURCES: tuple[Source, ...] = get_args(Source)

HEADER = """\
# The accuracy benchmark's gold set (README "Accuracy benchmark: are the answers right?").
# Questions and gold SQL are hand-written; each gold's `columns` and `rows` are what running
# its SQL gives on the demo data pinned at 2026-12-01T00:00:00Z: regenerate them with
# `.venv/bin/python -m evals.accuracy.gold --write` (tests/integration/test_accuracy_gold.py
# fails when they no longer match). source: lakehouse (Databricks SQL on the embedded
# lakehouse) | kpi_history (PostgreSQL over kpi_metrics_history). An ambiguous question lists
# several golds: an answer matching any one is right.
"""


@dataclass(frozen=True)
class GoldSql:
    sql: str
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[Any, ...], ...] = ()
    tolerance: Tolerance | None = None

    def answer(self) -> GoldAnswer:
        return GoldAnswer(self.columns, self.rows, self.tolerance or Tolerance())


@dataclass(frozen=True)
class GoldQuestion:
    id: str
    category: Category
    question: str
    golds: tuple[GoldSql, ...]
    source: Source = "lakehouse"
    notes: str = ""

    def answers(self) -> list[GoldAnswer]:
        return [g.answer() for g in self.golds]


class GoldError(ValueError):
    """The gold file is malformed (named entry and problem)."""


def _gold_sql(raw: Any, where: str) -> GoldSql:
    if not isinstance(raw, dict) or not isinstance(raw.get("sql"), str) or not raw["sql"].strip():
        raise GoldError(f"{where}: a gold needs `sql`")
    tol = raw.get("tolerance")
    tolerance = (
        Tolerance(float(tol.get("abs", 0.01)), float(tol.get("rel", 1e-6)))
        if isinstance(tol, dict)
        else None
    )
    return GoldSql(
        sql=raw["sql"].strip(),
        columns=tuple(raw.get("columns") or ()),
        rows=tuple(tuple(r) for r in raw.get("rows") or ()),
        tolerance=tolerance,
    )


def parse_gold(data: Any) -> list[GoldQuestion]:
    items = data.get("questions") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise GoldError("the gold file needs a `questions` list")
    out: list[GoldQuestion] = []
    seen: set[str] = set()
    for n, raw in enumerate(items):
        where = f"question {n}"
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            raise GoldError(f"{where}: needs an `id`")
        qid = raw["id"]
        where = f"question {qid!r}"
        if qid in seen:
            raise GoldError(f"{where}: duplicate id")
        seen.add(qid)
        if raw.get("category") not in CATEGORIES:
            raise GoldError(f"{where}: category must be one of {', '.join(CATEGORIES)}")
        source = raw.get("source", "lakehouse")
        if source not in SOURCES:
            raise GoldError(f"{where}: source must be one of {', '.join(SOURCES)}")
        if not isinstance(raw.get("question"), str) or not raw["question"].strip():
            raise GoldError(f"{where}: needs a `question`")
        golds = raw.get("gold")
        if not isinstance(golds, list) or not golds:
            raise GoldError(f"{where}: needs at least one gold")
        if len(golds) > 1 and raw["category"] != "ambiguous":
            raise GoldError(f"{where}: only an ambiguous question has several golds")
        out.append(
            GoldQuestion(
                id=qid,
                category=raw["category"],
                question=raw["question"].strip(),
                golds=tuple(_gold_sql(g, f"{where} gold {i}") for i, g in enumerate(golds)),
                source=source,
                notes=str(raw.get("notes") or ""),
            )
        )
    return out


def load_gold(path: Path = GOLD_FILE) -> list[GoldQuestion]:
    return parse_gold(yaml.safe_load(path.read_text()))


# ------------------------------------------------------------------ the pinned demo data


@dataclass
class PinnedData:
    """The demo data at PINNED_NOW: a seeded PostgreSQL database and the embedded lakehouse."""

    database_url: str
    warehouse: DuckDBWarehouse


@asynccontextmanager
async def pinned_data(
    database_url: str | None = None, *, statement_timeout_s: float = 10.0
) -> AsyncIterator[PinnedData]:
    """A fresh database (dropped at the end; or `database_url`, which must be empty of
    history) migrated and seeded at PINNED_NOW, and the lakehouse built for PINNED_NOW."""
    # imported here: the CLI answers --help and the no-credentials case without them
    from adapters.duckdb_warehouse import DuckDBWarehouse
    from adapters.pg_migrate import migrate
    from adapters.pg_seed import seed
    from evals.harness import eval_database

    async with eval_database(database_url) as url:
        await migrate(url)
        await seed(url, CONFIG_DIR, now=PINNED_NOW, trigger="command")
        warehouse = await asyncio.to_thread(
            DuckDBWarehouse,
            now=PINNED_NOW,
            statement_timeout_s=statement_timeout_s,
            statement_log_size=100_000,
        )
        try:
            yield PinnedData(url, warehouse)
        finally:
            warehouse.close()


async def run_gold_sql(data: PinnedData, source: Source, sql: str) -> GoldSql:
    """The columns and JSON-safe rows of one gold SQL (as the service would return them)."""
    if source == "lakehouse":
        result = await data.warehouse.execute(sql, max_rows=MAX_GOLD_ROWS)
        cols = tuple(c.name for c in result.columns)
        return GoldSql(sql, cols, tuple(tuple(r[c] for c in cols) for r in result.rows))
    import psycopg

    async with await psycopg.AsyncConnection.connect(data.database_url) as conn:
        cur = await conn.execute(sql)  # type: ignore[arg-type]  # gold SQL is trusted text
        cols = tuple(d.name for d in cur.description or ())
        rows = await cur.fetchmany(MAX_GOLD_ROWS)
    return GoldSql(sql, cols, tuple(tuple(json_safe(v) for v in r) for r in rows))


def _stable(sql: str, rows: tuple[tuple[Any, ...], ...]) -> tuple[tuple[Any, ...], ...]:
    """Rows in the SQL's order when it has an ORDER BY, else sorted (a GROUP BY's order
    varies between runs; rows are compared as multisets anyway)."""
    if "ORDER BY" in " ".join(sql.upper().split()):
        return rows
    return tuple(sorted(rows, key=lambda r: [(v is None, str(type(v)), str(v)) for v in r]))


async def compute_gold(
    questions: Sequence[GoldQuestion], database_url: str | None = None
) -> list[GoldQuestion]:
    """Every question with its golds' columns and rows computed afresh."""
    out, failed = [], []
    async with pinned_data(database_url) as data:
        for q in questions:
            golds = []
            for i, g in enumerate(q.golds):
                try:
                    ran = await run_gold_sql(data, q.source, g.sql)
                except Exception as exc:  # every broken gold is named, not only the first
                    failed.append(f"{q.id} gold {i}: {type(exc).__name__}: {exc}")
                    continue
                golds.append(replace(g, columns=ran.columns, rows=_stable(g.sql, ran.rows)))
            out.append(replace(q, golds=tuple(golds)))
    if failed:
        raise GoldError("gold SQL that does not run:\n" + "\n".join(failed))
    return out


# ------------------------------------------------------------------ writing


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _flow(dumper: yaml.SafeDumper, value: tuple[Any, ...]) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=True)


_Dumper.add_representer(str, _str)
_Dumper.add_representer(tuple, _flow)  # columns and rows: one line each


def dump_gold(questions: Sequence[GoldQuestion]) -> str:
    items = []
    for q in questions:
        item: dict[str, Any] = {"id": q.id, "category": q.category}
        if q.source != "lakehouse":
            item["source"] = q.source
        item["question"] = q.question
        if q.notes:
            item["notes"] = q.notes
        golds = []
        for g in q.golds:
            gold: dict[str, Any] = {"sql": g.sql + ("\n" if "\n" in g.sql else "")}
            if g.tolerance is not None:
                gold["tolerance"] = {"abs": g.tolerance.abs_tol, "rel": g.tolerance.rel_tol}
            gold["columns"] = tuple(g.columns)
            gold["rows"] = [tuple(r) for r in g.rows]
            golds.append(gold)
        item["gold"] = golds
        items.append(item)
    body = yaml.dump(
        {"questions": items}, Dumper=_Dumper, sort_keys=False, width=4096, allow_unicode=True
    )
    return HEADER + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evals.accuracy.gold",
        description="Run every gold SQL on the pinned demo data; --write stores the results.",
    )
    parser.add_argument("--write", action="store_true", help="rewrite gold.yaml with the results")
    parser.add_argument("--gold", type=Path, default=GOLD_FILE)
    args = parser.parse_args(argv)
    questions = load_gold(args.gold)
    computed = asyncio.run(compute_gold(questions))
    changed = [q.id for q, c in zip(questions, computed, strict=True) if q != c]
    if args.write:
        args.gold.write_text(dump_gold(computed))
        print(f"wrote {args.gold}: {len(computed)} questions ({len(changed)} changed)")
        return 0
    for qid in changed:
        print(f"differs: {qid}")
    print(f"{len(computed)} questions, {len(changed)} differ from {args.gold}")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
