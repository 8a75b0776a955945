"""Every HTTP route, one APIRouter module per resource, collected here in the order the
OpenAPI document lists them. Only this package (and service/app.py) speaks HTTP."""

from __future__ import annotations

from fastapi import APIRouter

from service.routes import (
    audit,
    changes,
    dashboard,
    data,
    docs,
    metrics,
    ops,
    sql,
    verified,
    widgets,
)

api_router = APIRouter()
for module in (data, changes, sql, widgets, verified, metrics, audit, ops, docs, dashboard):
    api_router.include_router(module.router)

__all__ = ["api_router"]
