"""Dependency aliases for the routes: the open resources, the resolver, and the
widget named in the path (or a 404 problem)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request

from domain.models import RESERVED_WIDGET_IDS, WIDGET_ID_RE, WidgetSpec
from service.problems import ProblemError
from service.resolution import Resolver
from service.wiring import Resources


def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


def get_resolver(request: Request) -> Resolver:
    resolver: Resolver = request.app.state.resolver
    return resolver


ResourcesDep = Annotated[Resources, Depends(get_resources)]
ResolverDep = Annotated[Resolver, Depends(get_resolver)]
WidgetId = Annotated[str, Path(pattern=WIDGET_ID_RE, description="The widget's id.")]


def new_widget_id(
    widget_id: Annotated[
        str,
        Path(
            pattern=WIDGET_ID_RE,
            description="The widget's id (not one of the API's own path segments: "
            + ", ".join(sorted(RESERVED_WIDGET_IDS))
            + ").",
            json_schema_extra={"not": {"enum": sorted(RESERVED_WIDGET_IDS)}},
        ),
    ],
) -> str:
    """The id of a widget being created: a reserved one is a 422 problem."""
    if widget_id in RESERVED_WIDGET_IDS:
        msg = f"widget id {widget_id!r} is reserved for the API's own paths"
        raise ProblemError(
            422,
            msg,
            title="Unprocessable Content",
            type_="urn:problem:validation",
            errors=[{"loc": ["path", "widget_id"], "msg": msg, "type": "reserved"}],
        )
    return widget_id


NewWidgetId = Annotated[str, Depends(new_widget_id)]


@dataclass(frozen=True, slots=True)
class Widget:
    id: str
    spec: WidgetSpec


def widget_not_found(widget_id: str) -> ProblemError:
    return ProblemError(404, f"widget {widget_id!r} is not registered", title="Widget not found")


def get_widget(widget_id: WidgetId, res: ResourcesDep) -> Widget:
    """The registered widget named in the path, or a 404 problem."""
    spec = res.registry.widget(widget_id)
    if spec is None:
        raise widget_not_found(widget_id)
    return Widget(widget_id, spec)


WidgetDep = Annotated[Widget, Depends(get_widget)]
