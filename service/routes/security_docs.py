"""The OpenAPI document's security: every operation whose dependencies ask for a scope
(`service.deps.requires`) declares the security schemes (`service.deps.SECURITY_SCHEMES`)
with those scopes, as FastAPI does for `Security(...)` dependencies, and the document lists
the schemes. They are declared here rather than as dependencies of every route: a dependency
per scheme would be solved on every request and read nothing (the caller is verified from
the headers by `service.deps._authenticate`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.encoders import jsonable_encoder
from fastapi.routing import APIRoute

from service.deps import SCOPES_ATTR, SECURITY_SCHEMES

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def required_scopes(dependant: Dependant) -> list[str]:
    """The scopes a route's dependencies ask for, in declaration order, each once."""
    scopes: list[str] = []
    stack = [dependant]
    while stack:
        current = stack.pop()
        for scope in getattr(current.call, SCOPES_ATTR, ()):
            if scope not in scopes:
                scopes.append(scope)
        stack.extend(reversed(current.dependencies))
    return scopes


def security_schemes() -> dict[str, Any]:
    """The `components.securitySchemes` of the document, by scheme name."""
    return {
        scheme.scheme_name: jsonable_encoder(scheme.model, by_alias=True, exclude_none=True)
        for scheme in SECURITY_SCHEMES
    }


def declare_security(router: APIRouter) -> None:
    """Before `router` is included: each of its routes that asks for scopes declares the
    security schemes with them (its `openapi_extra`)."""
    names = list(security_schemes())
    for route in router.routes:
        if isinstance(route, APIRoute) and route.include_in_schema:
            scopes = required_scopes(route.dependant)
            if scopes:
                security = [{name: list(scopes)} for name in names]
                route.openapi_extra = (route.openapi_extra or {}) | {"security": security}


def _place_security(operation: dict[str, Any]) -> None:
    """`security` where FastAPI puts a `Security` dependency's: right after `operationId`
    when the operation has parameters, else last (where `openapi_extra` leaves it)."""
    if "parameters" not in operation:
        return
    items = [(k, v) for k, v in operation.items() if k != "security"]
    security = operation["security"]
    operation.clear()
    for key, value in items:
        operation[key] = value
        if key == "operationId":
            operation["security"] = security
    operation.setdefault("security", security)


def finish(doc: dict[str, Any]) -> dict[str, Any]:
    """List the schemes the operations declare, each operation's `security` in its place."""
    used = False
    for path in doc.get("paths", {}).values():
        for method in METHODS:
            operation = path.get(method)
            if operation is not None and "security" in operation:
                _place_security(operation)
                used = True
    if used:
        doc.setdefault("components", {}).setdefault("securitySchemes", {}).update(
            security_schemes()
        )
    return doc


def install_security_docs(app: FastAPI) -> None:
    """Wrap `app.openapi` so each document it builds lists the security schemes."""
    generate: Callable[[], dict[str, Any]] = app.openapi
    finished: list[int] = []

    def openapi() -> dict[str, Any]:
        doc = generate()
        if id(doc) not in finished:  # built anew (FastAPI rebuilds it when routes change)
            finish(doc)
            finished[:] = [id(doc)]
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
