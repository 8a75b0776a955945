"""Execution accuracy: an answer's rows against the gold rows, as multisets (pure: no I/O,
no framework).

An answer is right when its rows equal one gold answer's rows as multisets (row order is
not scored: a ranking gold carries its LIMIT, so the set says who is on top), with its
columns matched to the gold's by content, not by name or position (any one-to-one
assignment of answer columns to gold columns whose rows then match). Values compare as:

- numbers (int, float; bools are not numbers): equal when |a - g| <= max(abs_tol,
  rel_tol * |g|); defaults `ABS_TOL` 0.01 (an answer rounded to two decimals passes) and
  `REL_TOL` 1e-6 (float noise of large sums); a gold may set its own.
- ISO 8601 date and timestamp strings: equal as UTC instants, a date being its midnight
  UTC (`date_trunc('MONTH', ts)` and a `DATE` column agree).
- anything else: equal as text after trimming surrounding whitespace.
- NULL equals NULL only.

Failure reasons, checked in this order (the first that applies), in the style of the
published NL-to-SQL benchmarks (Spider / BIRD execution accuracy and their error analyses):

| reason | when |
|---|---|
| refused | the service declined: safety layer, guardrail, invalid intent |
| error | no answer: the model, the warehouse or the service failed |
| empty_result | no rows, where the gold has some |
| extra_columns | more columns than the gold |
| missing_columns | fewer columns than the gold |
| extra_rows | every gold row is there, plus others |
| missing_rows | every answer row is a gold row, but some gold rows are not there |
| wrong_values | anything else: same shape, different values |

With several golds (an ambiguous question) the answer is right when it matches any; else
its reason is the one against the gold it comes closest to (the fewest unmatched rows
after the best column assignment, then the gold's order).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal, get_args

ABS_TOL = 0.01
REL_TOL = 1e-6
MAX_PERMUTED_COLUMNS = 6  # beyond this, columns are matched by name, then by position

AnswerStatus = Literal["rows", "refused", "error"]
Reason = Literal[
    "correct",
    "refused",
    "error",
    "empty_result",
    "extra_columns",
    "missing_columns",
    "extra_rows",
    "missing_rows",
    "wrong_values",
]
FAILURE_REASONS: tuple[Reason, ...] = tuple(r for r in get_args(Reason) if r != "correct")


@dataclass(frozen=True)
class Tolerance:
    abs_tol: float = ABS_TOL
    rel_tol: float = REL_TOL


@dataclass(frozen=True)
class GoldAnswer:
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    tolerance: Tolerance = field(default_factory=Tolerance)


@dataclass(frozen=True)
class Answer:
    """What the system answered: rows (with column names), or a refusal, or an error."""

    status: AnswerStatus
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[Any, ...], ...] = ()
    detail: str = ""

    @classmethod
    def from_dicts(cls, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> Answer:
        cols = tuple(columns)
        return cls("rows", cols, tuple(tuple(r.get(c) for c in cols) for r in rows))


@dataclass(frozen=True)
class Score:
    reason: Reason
    gold_index: int | None = None  # the gold matched (or the closest one)
    detail: str = ""

    @property
    def correct(self) -> bool:
        return self.reason == "correct"


# ------------------------------------------------------------------ values


def _instant(text: str) -> datetime | None:
    s = text.strip()
    if len(s) < 10 or s[4] != "-" or s[7] != "-":
        return None
    try:
        if len(s) == 10:
            d = date.fromisoformat(s)
            return datetime(d.year, d.month, d.day, tzinfo=UTC)
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def values_equal(answer: Any, gold: Any, tol: Tolerance = Tolerance()) -> bool:
    if answer is None or gold is None:
        return answer is None and gold is None
    a, g = _number(answer), _number(gold)
    if a is not None and g is not None:
        if math.isnan(a) or math.isnan(g):
            return math.isnan(a) and math.isnan(g)
        return abs(a - g) <= max(tol.abs_tol, tol.rel_tol * abs(g))
    if (a is None) != (g is None):
        return False
    if isinstance(answer, bool) or isinstance(gold, bool):
        return answer is gold
    sa, sg = str(answer).strip(), str(gold).strip()
    if sa == sg:
        return True
    ia, ig = _instant(sa), _instant(sg)
    return ia is not None and ia == ig


def _coarse(v: Any) -> Any:
    """A key equal values share (numbers and instants fall in one bucket each)."""
    if v is None:
        return None
    if _number(v) is not None:
        return 0
    if isinstance(v, str) and _instant(v) is not None:
        return 1
    return str(v).strip() if not isinstance(v, bool) else v


# ------------------------------------------------------------------ rows


def matched_rows(
    answer: Sequence[tuple[Any, ...]], gold: Sequence[tuple[Any, ...]], tol: Tolerance
) -> int:
    """How many gold rows find a distinct equal answer row (greedy, bucketed by the
    non-numeric values; with the default tolerance greedy is exact unless two gold values
    lie within 2 * tolerance of each other)."""
    buckets: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
    for row in answer:
        buckets.setdefault(tuple(_coarse(v) for v in row), []).append(row)
    matched = 0
    for grow in gold:
        bucket = buckets.get(tuple(_coarse(v) for v in grow))
        if not bucket:
            continue
        for i, arow in enumerate(bucket):
            if all(values_equal(a, g, tol) for a, g in zip(arow, grow, strict=True)):
                bucket.pop(i)
                matched += 1
                break
    return matched


def _assignments(answer_cols: Sequence[str], gold_cols: Sequence[str]) -> list[tuple[int, ...]]:
    """Orders of the answer's columns to try against the gold's: by name first, then by
    position, then every other permutation (up to MAX_PERMUTED_COLUMNS columns)."""
    n = len(gold_cols)
    lower = [c.lower() for c in answer_cols]
    out: list[tuple[int, ...]] = []
    by_name = [lower.index(c.lower()) if c.lower() in lower else -1 for c in gold_cols]
    if -1 not in by_name and len(set(by_name)) == n:
        out.append(tuple(by_name))
    out.append(tuple(range(n)))
    if n <= MAX_PERMUTED_COLUMNS:
        out.extend(p for p in itertools.permutations(range(n)) if p not in out)
    return out


def _against(answer: Answer, gold: GoldAnswer) -> tuple[Reason, int, str]:
    """(reason, unmatched rows, detail) of a row answer against one gold."""
    if not answer.rows and gold.rows:
        return "empty_result", len(gold.rows), "no rows"
    na, ng = len(answer.columns), len(gold.columns)
    if na != ng:
        reason: Reason = "extra_columns" if na > ng else "missing_columns"
        return reason, len(gold.rows) + len(answer.rows), f"{na} columns, gold has {ng}"
    best, best_order = -1, tuple(range(ng))
    for order in _assignments(answer.columns, gold.columns):
        rows = [tuple(r[i] for i in order) for r in answer.rows]
        m = matched_rows(rows, gold.rows, gold.tolerance)
        if m > best:
            best, best_order = m, order
        if m == len(gold.rows) == len(answer.rows):
            break
    a, g = len(answer.rows), len(gold.rows)
    unmatched = (a - best) + (g - best)
    names = ", ".join(answer.columns[i] for i in best_order)
    detail = f"{best}/{g} gold rows matched, {a} answer rows (columns as {names})"
    if best == a == g:
        return "correct", 0, detail
    if best == g:
        return "extra_rows", unmatched, detail
    if best == a:
        return "missing_rows", unmatched, detail
    return "wrong_values", unmatched, detail


def score(answer: Answer, golds: Sequence[GoldAnswer]) -> Score:
    """The answer against every acceptable gold: right if it matches any."""
    if not golds:
        raise ValueError("a question needs at least one gold answer")
    if answer.status == "refused":
        return Score("refused", None, answer.detail)
    if answer.status == "error":
        return Score("error", None, answer.detail)
    best: tuple[int, int] | None = None
    best_score = Score("wrong_values")
    for i, gold in enumerate(golds):
        reason, unmatched, detail = _against(answer, gold)
        if reason == "correct":
            return Score("correct", i, detail)
        if best is None or (unmatched, i) < best:
            best, best_score = (unmatched, i), Score(reason, i, detail)
    return best_score
