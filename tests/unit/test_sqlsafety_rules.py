"""Each safety rule alone, over its own fixture file (tests/fixtures/safety/rules/<rule>.sql,
SQL -> verdict, as sqlglot's optimizer tests do), and the rules' independence: every
fixture query gets the same verdict whatever the order of the rules."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sqlsafety import RULES, SafetyViolation, check_sql
from sqlsafety.names import compile_allowlist, compile_schema
from sqlsafety.prepare import Check, prepare
from sqlsafety.rules import Rule

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "safety"
RULE_FIXTURES = FIXTURES / "rules"
ALLOW: dict[str, frozenset[str]] = {
    "databricks": frozenset({"main.claims.claim_events", "main.ops.alerts", "main.claims.devices"}),
    "postgres": frozenset({"kpi_metrics_history"}),
}
SCHEMAS: dict[str, dict[str, dict[str, str]]] = {
    "claims": {
        "main.claims.claim_events": {
            "claim_id": "string",
            "region": "string",
            "amount": "double",
            "device_id": "string",
        },
        "main.claims.devices": {"device_id": "string", "manufacturer": "string"},
    },
    "kpi": {"kpi_metrics_history": {"metric_name": "text", "value": "float8"}},
}
BY_NAME: dict[str, Rule] = {r.__name__: r for r in RULES}


@dataclass(frozen=True)
class Case:
    where: str
    rule: str
    sql: str
    allowed: bool
    reason: str = ""  # text the rejection reason must contain
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def dialect(self) -> str:
        return self.meta.get("dialect", "databricks")

    def kwargs(self) -> dict[str, Any]:
        allowed = self.meta.get("allowed")
        return {
            "dialect": self.dialect,
            "allowed_tables": frozenset(allowed.split(",")) if allowed else ALLOW[self.dialect],
            "max_rows": int(self.meta.get("max_rows", 10_000)),
            "schema": SCHEMAS[self.meta["schema"]] if "schema" in self.meta else None,
        }

    def prepared(self) -> Check:
        kw = self.kwargs()
        schema = kw["schema"]
        return prepare(
            self.sql,
            dialect=kw["dialect"],
            allowed=compile_allowlist(kw["dialect"], kw["allowed_tables"]),
            max_rows=kw["max_rows"],
            schema=compile_schema(schema, kw["dialect"]) if schema else None,
        )


def parse_fixture(path: Path) -> list[Case]:
    """Blocks separated by blank lines: `# key: value` lines, SQL lines, `=> verdict`."""
    cases = []
    for number, block in enumerate(path.read_text().split("\n\n"), start=1):
        meta, sql, verdict = {}, [], None
        for line in block.strip().splitlines():
            if line.startswith("# "):
                key, sep, value = line[2:].partition(": ")
                if sep and key in {"dialect", "max_rows", "schema", "allowed"}:
                    meta[key] = value.strip()
            elif line.startswith("=> "):
                verdict = line[3:].strip()
            else:
                sql.append(line)
        if not sql and verdict is None:
            continue  # a comment-only block
        where = f"{path.name}#{number}"
        assert sql and verdict is not None, f"{where}: a block needs SQL and a => verdict"
        allowed = verdict == "ok"
        assert allowed or verdict.startswith("rejected"), f"{where}: bad verdict {verdict!r}"
        reason = verdict.partition(": ")[2] if not allowed else ""
        cases.append(Case(where, path.stem, "\n".join(sql), allowed, reason, meta))
    return cases


RULE_CASES = [c for p in sorted(RULE_FIXTURES.glob("*.sql")) for c in parse_fixture(p)]


def corpus_cases() -> list[Case]:
    """The end-to-end corpus (tests/fixtures/safety/*.jsonl) as cases for the full check."""
    out = []
    for path in sorted(FIXTURES.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                c = json.loads(line)
                out.append(
                    Case(
                        c["id"],
                        c["rule"] or "",
                        c["sql"],
                        c["allowed"],
                        "",
                        {"dialect": c["dialect"]},
                    )
                )
    return out


ALL_CASES = RULE_CASES + corpus_cases()


def run_alone(rule: Rule, case: Case) -> SafetyViolation | None:
    try:
        rule(case.prepared())
    except SafetyViolation as exc:
        return exc
    return None


def test_every_rule_has_a_fixture_file_both_ways() -> None:
    files = {p.stem for p in RULE_FIXTURES.glob("*.sql")}
    assert files == set(BY_NAME), "one fixture file per rule, named by the rule id"
    for name in BY_NAME:
        verdicts = {c.allowed for c in RULE_CASES if c.rule == name}
        assert verdicts == {True, False}, f"{name}.sql needs allowed and rejected cases"


@pytest.mark.parametrize("case", RULE_CASES, ids=[c.where for c in RULE_CASES])
def test_rule_alone(case: Case) -> None:
    """The rule on its own (after the setup step only) gives the fixture's verdict."""
    exc = run_alone(BY_NAME[case.rule], case)
    if case.allowed:
        assert exc is None, f"{case.where}: {exc}"
        return
    assert exc is not None, f"{case.where}: expected a rejection"
    assert exc.rule == case.rule, f"{case.where}: a rule reports its own name, got {exc.rule}"
    assert case.reason in exc.reason, f"{case.where}: {exc.reason!r}"


@pytest.mark.parametrize("rule", RULES, ids=[r.__name__ for r in RULES])
def test_rule_reports_only_its_own_id(rule: Rule) -> None:
    """Run alone over every query we have, a rule passes or raises its own id, nothing else."""
    for case in ALL_CASES:
        try:
            check = case.prepared()
        except SafetyViolation:
            continue  # unparseable: the setup step fails closed before any rule
        try:
            rule(check)
        except SafetyViolation as exc:
            assert exc.rule == rule.__name__, f"{case.where}: {exc}"


def _verdict(case: Case, rules: tuple[Rule, ...]) -> tuple[Any, ...]:
    try:
        checked = check_sql(case.sql, rules=rules, **case.kwargs())
    except SafetyViolation as exc:
        return ("rejected", exc.rule)
    return ("allowed", checked.sql, checked.tables, checked.limit)


@pytest.mark.parametrize("seed", range(5))
def test_shuffled_rules_give_the_same_verdicts(seed: int) -> None:
    """Any order of the rules allows the same queries (with the same rendered SQL, tables
    and limit) and rejects the same ones; the rule a shuffled order reports is one that
    rejects the query on its own, and the canonical order reports the first such rule."""
    order = list(RULES)
    random.Random(seed).shuffle(order)
    assert order != list(RULES)
    for case in ALL_CASES:
        canonical = _verdict(case, RULES)
        shuffled = _verdict(case, tuple(order))
        if canonical[0] == "allowed" or canonical[1] in {"parse", "render"}:
            assert shuffled == canonical, case.where
            continue
        assert shuffled[0] == "rejected", case.where
        violators = [r.__name__ for r in RULES if run_alone(r, case) is not None]
        assert shuffled[1] in violators and canonical[1] == violators[0], (case.where, violators)
