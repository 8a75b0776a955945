"""Eval cases: the JSONL datasets, parsed and checked, and the widget each case registers."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from domain.models import DataIntent, WidgetSpec

DATASETS_DIR = Path(__file__).parent / "datasets"
DEFAULT_DATASETS = (DATASETS_DIR / "adversarial.jsonl", DATASETS_DIR / "benign.jsonl")
DEFAULT_METRIC = "claims_insights"

Kind = Literal["adversarial", "benign"]
Expect = Literal["refused", "answered_safely", "rows"]


class CaseError(ValueError):
    """A dataset line is malformed (names the file, line and problem)."""


@dataclass(frozen=True)
class Case:
    id: str
    kind: Kind
    category: str
    question: str | None
    intent: dict[str, Any]
    model_response: dict[str, Any] | None
    expect: Expect
    expected_rows: list[dict[str, Any]] | dict[str, Any] | None = None
    expected_source: tuple[str, ...] = ()
    must_not_contain: tuple[str, ...] = ()
    notes: str = ""
    # run as this principal ({"tenant", "regions"}): every row's `region` must be one of its
    # regions (the row filters of config/access_policy.yaml); default: the dev principal
    principal: dict[str, Any] | None = None
    # first run the same case as this other principal, sharing the caches: the second run
    # must neither be served the first one's cached rows nor, across tenants, its approved SQL
    primed_by: dict[str, Any] | None = None
    # a construct the embedded engine refuses by design (adapters/embedded_verified.json:
    # not verified to mean there what it means on Databricks, e.g. "/(decimal, integer)"):
    # on the embedded engine that refusal ("... runs on Databricks") also passes the case
    embedded_refuses: str | None = None

    @property
    def uses_llm(self) -> bool:
        return self.question is not None

    def intent_dict(self) -> dict[str, Any]:
        """The widget's data_intent as given to the API (metric defaults to claims_insights)."""
        intent = {"metric_id": DEFAULT_METRIC} | dict(self.intent)
        if self.question is not None:
            intent["question"] = self.question
        return intent


_CASE_KEYS = frozenset(
    {
        "id",
        "category",
        "question",
        "intent",
        "model_response",
        "expect",
        "expected_rows",
        "expected_source",
        "must_not_contain",
        "notes",
        "principal",
        "primed_by",
        "embedded_refuses",
    }
)


def _principal(raw: Any, where: str, key: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    if (
        not isinstance(raw, dict)
        or set(raw) - {"tenant", "regions"}
        or not isinstance(raw.get("tenant"), str)
        or not isinstance(raw.get("regions", []), list)
    ):
        raise CaseError(f"{where}: {key} must be {{tenant: str, regions?: [..]}}")
    return raw


def parse_case(raw: dict[str, Any], kind: Kind, where: str = "") -> Case:
    """One dataset line -> Case; raises CaseError naming what is wrong."""
    unknown = set(raw) - _CASE_KEYS
    if unknown:
        raise CaseError(f"{where}: unknown keys {sorted(unknown)}")
    for key in ("id", "category", "expect"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise CaseError(f"{where}: {key!r} must be a non-empty string")
    expect = raw["expect"]
    if expect not in ("refused", "answered_safely", "rows"):
        raise CaseError(f"{where}: expect must be refused, answered_safely or rows")
    if kind == "benign" and expect != "rows":
        raise CaseError(f"{where}: a benign case must expect rows")
    question = raw.get("question")
    if question is not None and not isinstance(question, str):
        raise CaseError(f"{where}: question must be a string or null")
    response = raw.get("model_response")
    if question is not None:
        if not isinstance(response, dict) or not ({"tool", "text"} & set(response)):
            raise CaseError(f"{where}: a question case needs model_response {{tool|text}}")
        tool = response.get("tool")
        if tool is not None and not isinstance(tool, dict):
            raise CaseError(f"{where}: model_response.tool must be an object")
    intent = raw.get("intent") or {}
    if not isinstance(intent, dict):
        raise CaseError(f"{where}: intent must be an object")
    if "question" in intent:
        raise CaseError(f"{where}: put the question in 'question', not in the intent")
    expected_source = raw.get("expected_source") or ()
    if isinstance(expected_source, str):
        expected_source = (expected_source,)
    must_not_contain = raw.get("must_not_contain") or ()
    if not all(isinstance(x, str) and x for x in must_not_contain):
        raise CaseError(f"{where}: must_not_contain must be a list of non-empty strings")
    return Case(
        id=raw["id"],
        kind=kind,
        category=raw["category"],
        question=question,
        intent=intent,
        model_response=response,
        expect=expect,
        expected_rows=raw.get("expected_rows"),
        expected_source=tuple(expected_source),
        must_not_contain=tuple(must_not_contain),
        notes=str(raw.get("notes") or ""),
        principal=_principal(raw.get("principal"), where, "principal"),
        primed_by=_principal(raw.get("primed_by"), where, "primed_by"),
        embedded_refuses=_embedded_refuses(raw.get("embedded_refuses"), where),
    )


def kind_of(path: Path) -> Kind:
    return "benign" if path.stem.startswith("benign") else "adversarial"


def load_cases(paths: Iterable[Path] = DEFAULT_DATASETS) -> list[Case]:
    """All cases of the given JSONL files (`benign*` files hold benign cases). Ids and
    questions must be unique: every case gets its own widget and its own model answer."""
    cases: list[Case] = []
    for path in paths:
        kind = kind_of(path)
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path.name}:{n}"
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CaseError(f"{where}: not JSON: {exc}") from None
            cases.append(parse_case(raw, kind, where))
    for attr in ("id", "question"):
        seen: set[str] = set()
        for case in cases:
            value = getattr(case, attr)
            if value is None:
                continue
            key = " ".join(value.split()).lower()
            if key in seen:
                raise CaseError(f"duplicate {attr} {value!r}")
            seen.add(key)
    return cases


def select_cases(
    cases: Sequence[Case], *, category: str | None = None, limit: int | None = None
) -> list[Case]:
    """Cases of one category (or kind: 'adversarial' / 'benign'), at most `limit`."""
    out = [c for c in cases if category in (None, c.category, c.kind)]
    return out[:limit] if limit is not None else out


def build_spec(case: Case) -> WidgetSpec:
    """The widget a dashboard would register for this case (raises ValidationError: 422)."""
    return WidgetSpec(
        title=f"eval {case.id}"[:200],
        kind="table",
        data_intent=DataIntent.model_validate(case.intent_dict()),
        mock_data=[{"mock": True, "case": case.id}],
    )


def _embedded_refuses(value: Any, where: str) -> str | None:
    if value is None:
        return None
    from adapters.embedded_rule import VERIFIED_PATH  # the verified set, as data

    refused = json.loads(VERIFIED_PATH.read_text()).get("refused", {})
    if not isinstance(value, str) or value not in refused:
        raise CaseError(f"{where}: embedded_refuses must name a refused key of the verified set")
    return value
