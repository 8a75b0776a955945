"""/v1/widgets and /v1/widgets/{widget_id}: list, read, create or replace, delete."""

from __future__ import annotations

from fastapi import APIRouter, Response

from adapters.registry import AuditEntry, LimitKind, WidgetLimitExceeded
from domain.failures import InvalidIntent
from domain.models import WidgetSpec, filter_type_problems
from service.deps import (
    NewWidgetId,
    ResourcesDep,
    WidgetId,
    WidgetReader,
    WidgetSpecDep,
    WidgetWriter,
    widget_not_found,
)
from service.problems import (
    AUTH_PROBLEMS,
    BODY_PROBLEMS,
    PROBLEM_JSON,
    PROBLEMS,
    Problem,
    ProblemError,
)
from service.schemas import WidgetList, WidgetOut

router = APIRouter(tags=["widgets"])

# Each per-tenant limit (README "Security") as its problem: a spec too large is a body too
# large (413); mock_data over its own limit an unprocessable widget (422); one widget too
# many a conflict with what the tenant holds (409: delete one first; a retry never helps).
LIMIT_PROBLEMS: dict[LimitKind, tuple[int, str]] = {
    "spec_bytes": (413, "Widget spec too large"),
    "mock_data_bytes": (422, "Widget mock_data too large"),
    "widget_count": (409, "Too many widgets"),
}


def limit_problem(exc: WidgetLimitExceeded) -> ProblemError:
    status, title = LIMIT_PROBLEMS[exc.limit]
    return ProblemError(
        status, exc.detail, title=title, type_="urn:problem:widget-limit", limit=exc.limit
    )


@router.put(
    "/v1/widgets/{widget_id}",
    response_model=WidgetOut,
    responses={
        **BODY_PROBLEMS,
        201: {"model": WidgetOut, "description": "Created"},
        409: {
            "model": Problem,
            "content": {PROBLEM_JSON: {}},
            "description": "The tenant holds WIDGET_MAX_PER_TENANT widgets already",
        },
        413: {
            "model": Problem,
            "content": {PROBLEM_JSON: {}},
            "description": "Body over MAX_BODY_BYTES or spec over WIDGET_SPEC_MAX_BYTES",
        },
        503: {
            "model": Problem,
            "content": {PROBLEM_JSON: {}},
            "description": "Store unavailable",
        },
    },
)
async def put_widget(
    who: WidgetWriter,
    widget_id: NewWidgetId,
    spec: WidgetSpec,
    res: ResourcesDep,
    response: Response,
) -> WidgetOut:
    """Create or replace a widget spec of the caller's tenant (validated against the metric
    catalog; filter values against their column types; within the tenant's limits: 413 for
    a spec over WIDGET_SPEC_MAX_BYTES, 422 for mock_data over WIDGET_MOCK_DATA_MAX_BYTES,
    409 for a create beyond WIDGET_MAX_PER_TENANT). Scope `widgets:write`; audited in the
    write's transaction."""
    metric = res.registry.metrics().get(spec.data_intent.metric_id)
    if metric is not None:
        # typed filters: the metric table's column types come from the warehouse catalog
        types = _column_types(res, metric.definition.table)
        problems = filter_type_problems(spec.data_intent, metric, types)
        if problems:
            raise InvalidIntent("; ".join(problems))  # a 422 problem naming the filter
    # the registry's one write path: InvalidIntent is a 422, PostgresFailure a 503 problem
    try:
        created = await res.registry.put_widget(
            widget_id, spec, tenant=who.tenant, who=AuditEntry(who.tenant, who.subject)
        )
    except WidgetLimitExceeded as exc:
        raise limit_problem(exc) from None
    response.status_code = 201 if created else 200
    return WidgetOut(id=widget_id, spec=spec)


def _column_types(res: ResourcesDep, table: str) -> dict[str, str]:
    """The warehouse catalog's {column: type} for `table` (empty when unknown)."""
    for schema in res.context.table_schemas.current():
        if schema.name.lower() == table.lower():
            return {c.lower(): t for c, t in schema.columns}
    return {}


@router.get("/v1/widgets/{widget_id}", response_model=WidgetOut, responses=PROBLEMS)
async def get_widget(widget: WidgetSpecDep) -> WidgetOut:
    """Read one widget spec of the caller's tenant. Scope `widgets:read`."""
    return WidgetOut(id=widget.id, spec=widget.spec)


@router.get("/v1/widgets", response_model=WidgetList, responses=AUTH_PROBLEMS)
async def list_widgets(res: ResourcesDep, who: WidgetReader) -> WidgetList:
    """List the caller's tenant's widgets. Scope `widgets:read`."""
    items = sorted(res.registry.widgets(who.tenant).items())
    return WidgetList(widgets=[WidgetOut(id=k, spec=v) for k, v in items])


@router.delete("/v1/widgets/{widget_id}", status_code=204, responses=PROBLEMS)
async def delete_widget(widget_id: WidgetId, res: ResourcesDep, who: WidgetWriter) -> Response:
    """Delete a widget of the caller's tenant. Scope `widgets:write`; audited."""
    deleted = await res.registry.delete_widget(  # PostgresFailure: a 503 problem
        widget_id, tenant=who.tenant, who=AuditEntry(who.tenant, who.subject)
    )
    if not deleted:
        raise widget_not_found(widget_id)
    return Response(status_code=204)
