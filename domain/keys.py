"""Cache keys. A key covers the widget, the effective data_intent, the metric's routing
and definition, and a format version, so a changed spec or routing never serves old data."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from domain.models import DataIntent, MetricDef, RoutingEntry

CACHE_FORMAT_VERSION = 1


def _digest(payload: Any) -> str:
    blob = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(blob).hexdigest()[:24]


def result_cache_key(
    widget_id: str, intent: DataIntent, routing: RoutingEntry, metric: MetricDef
) -> str:
    digest = _digest(
        {
            "intent": intent.model_dump(mode="json"),
            "routing": routing.model_dump(mode="json"),
            "definition": metric.definition.model_dump(mode="json"),
        }
    )
    return f"r{CACHE_FORMAT_VERSION}:{widget_id}:{digest}"


def approved_sql_key(
    *,
    question: str,
    metric: MetricDef,
    intent: DataIntent,
    schema_version: str,
    model_id: str,
    policy_version: str,
) -> str:
    """Key of an LLM answer that passed the safety layer (reused instead of asking again).
    It covers the whole intent: the same question with other dimensions, filters, limit or
    time range is a different query."""
    digest = _digest(
        {
            "question": " ".join(question.split()),  # values in a question are case-sensitive
            "intent": intent.model_dump(mode="json", exclude={"question"}),
            "metric": metric.name,
            "definition": metric.definition.model_dump(mode="json"),
            "schema": schema_version,
            "model": model_id,
            "policy": policy_version,
        }
    )
    return f"g{CACHE_FORMAT_VERSION}:{metric.name}:{digest}"
