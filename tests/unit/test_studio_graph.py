"""The graph as Studio gets it (graph/studio.py), without a server: the input form's
schema, what each step shows, the checkpoint types, and a factory that opens nothing."""

from __future__ import annotations

import asyncio

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from domain.access import RowAccess, TableFilter
from domain.models import DataIntent, MetricDef, RoutingEntry, WidgetSpec
from graph import studio
from graph.state import State


def test_the_input_form_has_the_request_fields_with_descriptions() -> None:
    graph = asyncio.run(studio.make_graph())
    form = graph.get_input_jsonschema()
    assert set(form["properties"]) == {"widget_id", "refresh", "dry_run", "spec", "intent"}
    assert all(p.get("description") for p in form["properties"].values()), form
    assert form["properties"]["widget_id"]["description"].startswith("Needed: ")
    assert "decided" in graph.get_output_jsonschema()["properties"]


def test_loading_the_graph_opens_no_resources() -> None:
    host = studio._shared_host()
    asyncio.run(studio.make_graph())
    assert host._opening is None and host._stack is None


def test_decided_shows_decisions_and_hides_rows() -> None:
    routing = RoutingEntry(backend="postgres")
    shown = studio.decided(
        {
            "backend": "postgres",
            "routing": routing,
            "rows": [{"v": 1}, {"v": 2}],
            "safety": {"allowed": True, "rule": None, "reason": None},
            "trace": [{"node": "x", "ms": 1.0, "outcome": "ok"}],
        }
    )
    assert shown["backend"] == "postgres" and shown["rows"] == "<2 rows hidden>"
    assert shown["routing"]["backend"] == "postgres" and shown["safety"]["allowed"] is True
    assert "trace" not in shown


def test_decided_shows_the_intent_a_question_was_grounded_in() -> None:
    intent = DataIntent(metric_id="active_issues_count", dimensions=["team"])
    shown = studio.decided({"backend": "postgres", "grounded": intent, "trust": "x"})
    assert shown["backend"] == "postgres"
    assert shown["grounded"]["metric_id"] == "active_issues_count"
    assert shown["grounded"]["dimensions"] == ["team"]


def test_every_model_the_state_holds_is_registered_for_checkpoints() -> None:
    types = set(studio.checkpoint_types(State))
    assert {WidgetSpec, MetricDef, RoutingEntry, RowAccess, TableFilter} <= types
    # a serializer that allows only these (strict: an unregistered type comes back as a
    # plain dict) reads a checkpoint's values back as they were
    strict = JsonPlusSerializer(allowed_msgpack_modules=studio.CHECKPOINT_TYPES)
    values = {
        "spec": WidgetSpec.model_validate(
            {"title": "t", "kind": "kpi", "data_intent": {"metric_id": "m"}, "mock_data": [{}]}
        ),
        "routing": RoutingEntry(backend="postgres"),
        "access": RowAccess(tables=(TableFilter("t", "region", ("west",)),)),
    }
    for serde in (strict, studio.checkpointer().serde):
        back = serde.loads_typed(strict.dumps_typed(values))
        assert back["spec"] == values["spec"] and back["routing"] == values["routing"]
        assert isinstance(back["access"], RowAccess)  # (its tuples come back as lists)
        assert isinstance(back["access"].tables[0], TableFilter)
