"""Dependency aliases for the handlers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from domain.models import WIDGET_ID_RE
from service.resources import Resources


def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]
WidgetId = Annotated[str, Path(pattern=WIDGET_ID_RE, description="The widget's id.")]
