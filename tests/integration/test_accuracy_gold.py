"""The accuracy benchmark's gold set cannot rot: every gold SQL still runs on the pinned demo
data (the embedded lakehouse and a freshly seeded PostgreSQL) and gives its stored rows."""

from __future__ import annotations

from collections import Counter

import pytest

from evals.accuracy.gold import (
    CATEGORIES,
    GOLD_FILE,
    compute_gold,
    dump_gold,
    load_gold,
    parse_gold,
)
from evals.accuracy.scoring import Answer, score


def test_the_gold_set_covers_every_category_and_both_sources() -> None:
    questions = load_gold()
    assert len(questions) >= 60
    per_category = Counter(q.category for q in questions)
    assert set(per_category) == set(CATEGORIES)
    assert min(per_category.values()) >= 6
    assert {q.source for q in questions} == {"lakehouse", "kpi_history"}
    assert all(len(q.golds) > 1 for q in questions if q.category == "ambiguous")
    assert all(g.rows for q in questions for g in q.golds), "a gold with no rows scores nothing"


async def test_every_gold_sql_gives_its_stored_rows() -> None:
    stored = load_gold()
    fresh = await compute_gold(stored)
    wrong = []
    for old, new in zip(stored, fresh, strict=True):
        for i, (g_old, g_new) in enumerate(zip(old.golds, new.golds, strict=True)):
            got = Answer("rows", g_new.columns, g_new.rows)
            verdict = score(got, [g_old.answer()])
            if not verdict.correct or g_new.columns != g_old.columns:
                wrong.append(f"{old.id} gold {i}: {verdict.reason} {verdict.detail}")
    assert not wrong, "run `python -m evals.accuracy.gold --write` if intended:\n" + "\n".join(
        wrong
    )


def test_the_gold_file_round_trips() -> None:
    import yaml

    questions = load_gold()
    assert parse_gold(yaml.safe_load(dump_gold(questions))) == questions
    assert GOLD_FILE.read_text() == dump_gold(questions)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "questions"),
        ({"questions": [{"category": "ratio"}]}, "needs an `id`"),
        (
            {"questions": [{"id": "a", "category": "nope", "question": "q", "gold": []}]},
            "category must be",
        ),
        ({"questions": [{"id": "a", "category": "ratio", "question": "q"}]}, "at least one"),
        (
            {
                "questions": [
                    {"id": "a", "category": "ratio", "question": "q", "gold": [{"sql": "x"}] * 2}
                ]
            },
            "only an ambiguous",
        ),
    ],
)
def test_a_malformed_gold_file_is_refused_by_name(data: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_gold(data)
