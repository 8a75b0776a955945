"""How the accuracy benchmark reads a response: rows only when answered live; the service
declining (safety layer, guardrail, invalid intent) is `refused`, any other failure `error`."""

from __future__ import annotations

import pytest

from evals.accuracy.runner import to_answer, way_taken


def test_a_live_answer_gives_its_rows_in_schema_order() -> None:
    response = {
        "source": "databricks",
        "executed": True,
        "schema": [{"name": "region", "type": "string"}, {"name": "n", "type": "integer"}],
        "data": [{"n": 3, "region": "west"}],
    }
    answer = to_answer(response)
    assert (answer.status, answer.columns, answer.rows) == ("rows", ("region", "n"), (("west", 3),))


@pytest.mark.parametrize(
    ("source", "status"),
    [
        ("safety_violation", "refused"),
        ("llm_refused", "refused"),
        ("invalid_intent", "refused"),
        ("llm_invalid_output", "error"),
        ("databricks_error", "error"),
        ("databricks_timeout", "error"),
        ("llm_timeout", "error"),
        ("error", "error"),
    ],
)
def test_a_failure_is_refused_or_error(source: str, status: str) -> None:
    answer = to_answer({"source": source, "executed": False, "error_detail": "why", "data": [{}]})
    assert answer.status == status and answer.rows == ()
    assert answer.detail == f"{source}: why"


def test_mock_rows_are_never_an_answer() -> None:
    # a degraded widget shows its mock data: not rows the service answered with
    answer = to_answer({"source": "databricks", "executed": False, "data": [{"value": 0}]})
    assert answer.status == "error"


def test_the_way_taken() -> None:
    assert way_taken({"trust": "compiled_from_metric"}) == "compiled_from_metric"
    assert way_taken({"generation": {"way": "model_written_unverified"}}) == (
        "model_written_unverified"
    )
    assert way_taken({}) == "none"
