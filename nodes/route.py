"""route: find the widget, its metric and the metric's routing entry (authoritative)."""

from __future__ import annotations

from typing import Any, TypeVar

from langgraph.runtime import Runtime
from pydantic import BaseModel, ValidationError

from domain.access import UNRESTRICTED
from domain.failures import FailureKind
from domain.keys import result_cache_key
from domain.models import DataIntent, WidgetSpec, validate_intent
from graph.context import Context
from graph.state import State
from nodes._common import fail, traced

M = TypeVar("M", bound=BaseModel)


class InvalidInput(ValueError):
    """The run's input names no widget, or its inline spec or intent is not valid (the HTTP
    layer always passes valid ones; Studio users type them). A ValueError: hosts that show
    a run's error (langgraph dev) show its message."""


class WidgetNotFound(LookupError, ValueError):
    """The widget id is not registered (the HTTP layer answers 404 before invoking; in
    Studio the message says what to send)."""


def _inline(model: type[M], value: dict[str, Any], name: str) -> M:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or name}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise InvalidInput(f"the input's `{name}` is not valid: {problems}") from None


@traced("route")
async def route(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = runtime.context
    access = state.get("access") or UNRESTRICTED
    widget_id = state.get("widget_id")
    spec = state.get("spec")  # an inline spec needs no id (the SQL preview route sends none)
    if isinstance(spec, dict):  # JSON input (Studio): validated as PUT /v1/widgets/{id} is
        spec = _inline(WidgetSpec, spec, "spec")
    if spec is None:
        if not isinstance(widget_id, str) or not widget_id:
            raise InvalidInput(
                "the input needs `widget_id`, a registered widget's id (GET /v1/widgets "
                'lists them), e.g. {"widget_id": "open-issues-kpi"}'
            )
        spec = ctx.registry.widget(widget_id, access.tenant)
        if spec is None:
            raise WidgetNotFound(
                f"unknown widget {widget_id!r} (tenant {access.tenant!r}): no such widget is "
                "registered. GET /v1/widgets lists the registered ids; or give the widget "
                "inline as `spec`"
            )
    if (inline := state.get("intent")) is not None:  # Studio: another intent, same widget
        intent_given = _inline(DataIntent, inline, "intent") if isinstance(inline, dict) else inline
        spec = spec.model_copy(update={"data_intent": intent_given})
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
