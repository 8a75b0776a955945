"""The accuracy benchmark's scoring (evals/accuracy/scoring.py): every failure reason, the
multiset comparison, column matching by content, the tolerance and ambiguous golds."""

from __future__ import annotations

import pytest

from evals.accuracy.scoring import (
    FAILURE_REASONS,
    Answer,
    GoldAnswer,
    Tolerance,
    score,
    values_equal,
)

REGIONS = GoldAnswer(
    ("region", "claims"),
    (("northeast", 3940), ("southeast", 3666), ("west", 3532)),
)


def rows(*r: tuple[object, ...], cols: tuple[str, ...] = ("region", "claims")) -> Answer:
    return Answer("rows", cols, tuple(r))


def test_the_same_rows_in_another_order_are_right() -> None:
    s = score(rows(("west", 3532), ("northeast", 3940), ("southeast", 3666)), [REGIONS])
    assert s.reason == "correct" and s.correct and s.gold_index == 0


def test_column_names_and_order_do_not_matter() -> None:
    answer = rows(
        (3940, "northeast"), (3666, "southeast"), (3532, "west"), cols=("n", "where_filed")
    )
    assert score(answer, [REGIONS]).reason == "correct"


def test_rows_are_a_multiset_duplicates_count() -> None:
    gold = GoldAnswer(("x",), ((1,), (1,), (2,)))
    assert score(rows((1,), (2,), (1,), cols=("x",)), [gold]).reason == "correct"
    assert score(rows((1,), (2,), cols=("x",)), [gold]).reason == "missing_rows"
    assert score(rows((1,), (1,), (1,), (2,), cols=("x",)), [gold]).reason == "extra_rows"


def test_refused_and_error_are_reasons_of_their_own() -> None:
    assert score(Answer("refused", detail="safety_violation"), [REGIONS]).reason == "refused"
    s = score(Answer("error", detail="databricks_error: boom"), [REGIONS])
    assert (s.reason, s.detail) == ("error", "databricks_error: boom")


def test_no_rows_is_an_empty_result() -> None:
    assert score(rows(), [REGIONS]).reason == "empty_result"
    # ...unless the gold is empty too
    assert score(rows(), [GoldAnswer(("region", "claims"), ())]).reason == "correct"


def test_extra_and_missing_columns() -> None:
    extra = rows(
        ("northeast", 3940, 0.33),
        ("southeast", 3666, 0.31),
        ("west", 3532, 0.3),
        cols=("region", "claims", "share"),
    )
    assert score(extra, [REGIONS]).reason == "extra_columns"
    missing = rows((3940,), (3666,), (3532,), cols=("claims",))
    assert score(missing, [REGIONS]).reason == "missing_columns"


def test_missing_and_extra_rows() -> None:
    assert score(rows(("northeast", 3940), ("west", 3532)), [REGIONS]).reason == "missing_rows"
    more = rows(("northeast", 3940), ("southeast", 3666), ("west", 3532), ("midwest", 2995))
    assert score(more, [REGIONS]).reason == "extra_rows"


def test_wrong_values() -> None:
    off = rows(("northeast", 3941), ("southeast", 3666), ("west", 3532))
    s = score(off, [REGIONS])
    assert s.reason == "wrong_values"
    assert "2/3 gold rows matched" in s.detail
    # fewer rows and one of them wrong: still wrong values (neither a subset nor a superset)
    assert score(rows(("northeast", 1), ("west", 3532)), [REGIONS]).reason == "wrong_values"


def test_every_failure_reason_is_reachable() -> None:
    seen = {
        score(Answer("refused"), [REGIONS]).reason,
        score(Answer("error"), [REGIONS]).reason,
        score(rows(), [REGIONS]).reason,
        score(rows(("a", 1, 2), cols=("a", "b", "c")), [REGIONS]).reason,
        score(rows((1,), cols=("a",)), [REGIONS]).reason,
        score(rows(*REGIONS.rows, ("x", 1)), [REGIONS]).reason,
        score(rows(*REGIONS.rows[:1]), [REGIONS]).reason,
        score(rows(("x", 1), ("y", 2), ("z", 3)), [REGIONS]).reason,
    }
    assert seen == set(FAILURE_REASONS)


def test_numeric_tolerance() -> None:
    assert values_equal(525.17, 525.173302)  # rounded to two decimals
    assert not values_equal(525.2, 525.173302)
    assert values_equal(4555687.21, 4555687.2100000004)  # float noise of a large sum
    assert values_equal(17, 17.0)
    assert not values_equal(0.179, 17.9)  # a fraction is not a percentage
    assert values_equal(525.2, 525.173302, Tolerance(abs_tol=0.05))
    assert values_equal(1_000_100.0, 1_000_000, Tolerance(abs_tol=0, rel_tol=1e-3))


def test_values_of_other_types() -> None:
    assert values_equal(None, None)
    assert not values_equal(None, 0)
    assert not values_equal(0, None)
    assert not values_equal("3", 3)  # text is not a number
    assert values_equal(" west", "west")
    assert not values_equal("West", "west")
    assert values_equal(True, True) and not values_equal(True, 1)
    # dates and timestamps compare as instants (a date is its midnight UTC)
    assert values_equal("2026-11-01", "2026-11-01T00:00:00+00:00")
    assert values_equal("2026-11-01T01:00:00+01:00", "2026-11-01T00:00:00Z")
    assert not values_equal("2026-11-02", "2026-11-01T00:00:00+00:00")
    assert values_equal(float("nan"), float("nan"))


def test_ambiguous_any_gold_is_right_else_the_closest_reason() -> None:
    filed = GoldAnswer(("avg",), ((525.173302,),))
    paid = GoldAnswer(("avg",), ((392.09,),))
    s = score(rows((392.09,), cols=("a",)), [filed, paid])
    assert (s.reason, s.gold_index) == ("correct", 1)
    top3 = GoldAnswer(("m", "n"), (("Globex", 865), ("Stark", 858), ("Umbrella", 839)))
    top1 = GoldAnswer(("m", "n"), (("Globex", 865),))
    # two of the top three: missing rows against top3 (1 unmatched) beats extra rows
    # against top1 (1 unmatched) only by the golds' order
    s = score(rows(("Globex", 865), ("Stark", 858), cols=("m", "n")), [top3, top1])
    assert (s.reason, s.gold_index) == ("missing_rows", 0)
    s = score(rows(("Globex", 865), ("Stark", 858), cols=("m", "n")), [top1, top3])
    assert (s.reason, s.gold_index) == ("extra_rows", 0)


def test_a_question_needs_a_gold() -> None:
    with pytest.raises(ValueError, match="at least one gold"):
        score(Answer("refused"), [])


def test_from_dicts_takes_the_columns_in_order() -> None:
    answer = Answer.from_dicts(["region", "claims"], [{"claims": 3940, "region": "northeast"}])
    assert answer.rows == (("northeast", 3940),)
