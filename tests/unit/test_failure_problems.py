"""service/problems.py::kind_problem: the one mapping from failure kind to problem."""

from __future__ import annotations

from domain.failures import FailureKind
from service.problems import failure_problem, kind_problem


def test_every_failure_kind_has_one_problem() -> None:
    for kind in FailureKind:
        problem = kind_problem(kind)
        assert problem.status in (422, 429, 503), kind
        assert problem.title
    assert kind_problem(FailureKind.postgres_timeout).status == 503
    assert kind_problem(FailureKind.safety_violation).type_ == "urn:problem:safety-violation"


def test_a_failure_problem_names_its_kind_unless_told_not_to() -> None:
    shown = failure_problem(FailureKind.llm_timeout, "slow")
    assert (shown.status, shown.title, shown.extra) == (
        503,
        "LLM unavailable",
        {"kind": "llm_timeout"},
    )
    hidden = failure_problem(FailureKind.safety_violation, "no", show_kind=False, rule="r")
    assert hidden.status == 422 and hidden.extra == {"rule": "r"}
