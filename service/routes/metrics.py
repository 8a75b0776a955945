"""GET /v1/metrics: the catalog with routing, dimensions and filter columns."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import MetricsReader, ResourcesDep
from service.problems import AUTH_PROBLEMS
from service.schemas import MetricList, MetricOut

router = APIRouter(tags=["metrics"])


@router.get("/v1/metrics", response_model=MetricList, responses=AUTH_PROBLEMS)
async def list_metrics(res: ResourcesDep, who: MetricsReader) -> MetricList:
    """List the metric catalog with each metric's routing, dimensions and filter columns."""
    out = []
    for name, m in sorted(res.registry.metrics().items()):
        r = res.registry.routing(name)
        d = m.definition
        out.append(
            MetricOut(
                name=name,
                description=m.description,
                unit=m.unit,
                owner=m.owner,
                backend=r.backend if r else None,
                generator=r.generator if r else None,
                ttl_seconds=r.ttl_seconds if r else None,
                dimensions=list(d.dimensions),
                dimension_order={k: list(v) for k, v in d.dimension_order.items()},
                filter_columns=sorted(d.allowed_filter_columns),
                governance_status=m.governance_status,
                last_validated_at=m.last_validated_at.isoformat() if m.last_validated_at else None,
            )
        )
    return MetricList(metrics=out)
