"""Every HTTP route, one APIRouter module per resource, collected here in the order the
OpenAPI document lists them (each declaring the security schemes of its scoped routes:
security_docs.py). Only this package (and service/app.py) speaks HTTP."""

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
from service.routes.security_docs import declare_security

api_router = APIRouter()
for module in (data, changes, sql, widgets, verified, metrics, audit, ops, docs, dashboard):
    declare_security(module.router)  # its scoped routes' security schemes (security_docs.py)
    api_router.include_router(module.router)

__all__ = ["api_router"]
