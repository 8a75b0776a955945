"""route: find the widget, its metric and the metric's routing entry (authoritative)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from domain.access import UNRESTRICTED
from domain.failures import FailureKind
from domain.keys import result_cache_key
from domain.models import validate_intent
from graph.context import Context
from graph.state import State
from nodes._common import fail, traced


class InvalidInput(ValueError):
    """The run's input names no widget (the HTTP layer always passes one; Studio users
    type it). A ValueError: hosts that show a run's error (langgraph dev) show this."""


class WidgetNotFound(LookupError, ValueError):
    """The widget id is not registered (the HTTP layer answers 404 before invoking; in
    Studio the message says what to send)."""


@traced("route")
async def route(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = runtime.context
    access = state.get("access") or UNRESTRICTED
    widget_id = state.get("widget_id")
    # an inline spec needs no id (the SQL preview route sends none)
    if "spec" not in state and (not isinstance(widget_id, str) or not widget_id):
        raise InvalidInput(
            "the input needs `widget_id`, a registered widget's id (GET /v1/widgets lists "
            'them), e.g. {"widget_id": "open-issues-kpi"}'
        )
    spec = state.get("spec") or ctx.registry.widget(str(widget_id), access.tenant)
    if spec is None:
        raise WidgetNotFound(
            f"unknown widget {widget_id!r} (tenant {access.tenant!r}): no such widget is "
            "registered. GET /v1/widgets lists the registered ids; or give the widget "
            "inline as `spec`"
        )
    update: dict[str, Any] = {"spec": spec}
    intent = spec.data_intent
    metric = ctx.registry.metric(intent.metric_id)
    if metric is None:
        return update | fail(
            "route", FailureKind.invalid_intent, f"unknown metric {intent.metric_id!r}"
        )
    update["metric"] = metric
    routing = ctx.registry.routing(metric.name)
    if routing is None:
        return update | fail(
            "route", FailureKind.routing_missing, f"metric {metric.name!r} has no routing entry"
        )
    update |= {
        "routing": routing,
        "backend": routing.backend,
        "generator": "llm" if (intent.question or routing.generator == "llm") else "compiled",
    }
    problems = validate_intent(intent, {metric.name: metric})
    if problems:
        return update | fail("route", FailureKind.invalid_intent, "; ".join(problems))
    update["cache_key"] = result_cache_key(str(widget_id), intent, routing, metric, access)
    if ctx.rollups is not None and update["generator"] == "compiled":
        update["rollup_candidates"] = tuple(r.name for r in ctx.rollups.for_metric(metric.name))
    update["outcome"] = routing.backend
    return update
