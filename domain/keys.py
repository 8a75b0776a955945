"""Cache keys. A key covers the widget, the effective data_intent, the metric's routing
and definition, and a format version, so a changed spec or routing never serves old data."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from domain.access import RowAccess
from domain.models import DataIntent, MetricDef, RoutingEntry

CACHE_FORMAT_VERSION = 2  # 2: keys carry the tenant and the row filters applied
# every resolved answer's key (and its failure note's) starts with this
ANSWER_KEY_PREFIX = f"r{CACHE_FORMAT_VERSION}:"


def access_scope(access: RowAccess, metric: MetricDef, backend: str, generator: str) -> Any:
    """The canonical part of a key that says who may see the entry: the tenant and the
    row filters that apply to THIS query (never the user): a Postgres metric's series
    filter; for compiled warehouse SQL, the filter of the metric's table; for LLM SQL
    (which may read any allowlisted table), every table filter. Values are already
    canonical (sorted, deduplicated, type-normalized strings), so principals with the
    same access share entries and principals with different access never do."""
    if backend == "postgres":
        series = access.series_filter(metric.name)
        filters = [] if series is None else [[series.metric, series.dimension, list(series.values)]]
    else:
        tables = access.table_filters(
            [metric.definition.table] if generator == "compiled" else None
        )
        filters = [[f.table, f.column, list(f.values)] for f in tables]
    return {"tenant": access.tenant, "filters": sorted(filters)}


def access_fingerprint(access: RowAccess) -> str:
    """The whole access of a request (tenant and every filter), for keys made before the
    metric is known (single flight)."""
    return _digest(
        {
            "tenant": access.tenant,
            "tables": sorted([f.table, f.column, list(f.values)] for f in access.tables),
            "series": sorted([f.metric, f.dimension, list(f.values)] for f in access.series),
        }
    )


def _digest(payload: Any) -> str:
    blob = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(blob).hexdigest()[:24]


def result_cache_key(
    widget_id: str,
    intent: DataIntent,
    routing: RoutingEntry,
    metric: MetricDef,
    access: RowAccess | None = None,
) -> str:
    """THE key of a resolved answer (and of its single flight): widget, intent, routing,
    definition, and who may see it (`access_scope`). The tenant is also spelled out in
    the key, so one tenant's entries can be found (and dropped) by prefix."""
    access = access or RowAccess()
    generator = "llm" if (intent.question or routing.generator == "llm") else "compiled"
    digest = _digest(
        {"access": access_scope(access, metric, routing.backend, generator)}
        | _dumped(intent, routing, metric)
    )
    return f"{ANSWER_KEY_PREFIX}{access.tenant}:{widget_id}:{digest}"


# (intent, routing, metric) by identity -> their JSON forms in a key. The models are frozen
# and the registry hands out the same objects on every request, so a key costs one dump per
# model, not three per request. Each row holds its models, so an id is never reused while
# its row stands; bounded (cleared when full: the registry holds far fewer).
_DUMPED: dict[tuple[int, int, int], tuple[DataIntent, RoutingEntry, MetricDef, dict[str, Any]]] = {}
_DUMPED_MAX = 4096


def _dumped(intent: DataIntent, routing: RoutingEntry, metric: MetricDef) -> dict[str, Any]:
    ident = (id(intent), id(routing), id(metric))
    row = _DUMPED.get(ident)
    if row is not None and row[0] is intent and row[1] is routing and row[2] is metric:
        return row[3]
    dumped = {
        "intent": intent.model_dump(mode="json"),
        "routing": routing.model_dump(mode="json"),
        "definition": metric.definition.model_dump(mode="json"),
    }
    if len(_DUMPED) >= _DUMPED_MAX:
        _DUMPED.clear()
    _DUMPED[ident] = (intent, routing, metric, dumped)
    return dumped


def approved_sql_key(
    *,
    question: str,
    metric: MetricDef,
    intent: DataIntent,
    schema_version: str,
    model_id: str,
    policy_version: str,
    tenant: str = "default",
) -> str:
    """Key of an LLM answer that passed the safety layer (reused instead of asking again).
    It covers the whole intent: the same question with other dimensions, filters, limit or
    time range is a different query. It carries the tenant: approved SQL is never reused
    across tenants (within one it is shared: row filters are applied after approval, to
    every run, and the cached SQL is the unfiltered one)."""
    digest = _digest(
        {
            "question": " ".join(question.split()),  # values in a question are case-sensitive
            "intent": intent.model_dump(mode="json", exclude={"question"}),
            "metric": metric.name,
            "definition": metric.definition.model_dump(mode="json"),
            "schema": schema_version,
            "model": model_id,
            "policy": policy_version,
            "tenant": tenant,
        }
    )
    return f"g{CACHE_FORMAT_VERSION}:{tenant}:{metric.name}:{digest}"
