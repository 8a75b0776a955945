"""The data-version stamp a backend node takes before its query (domain/data_versions.py)."""

from __future__ import annotations

from typing import Any

from domain.data_versions import sources_of
from graph.context import Context
from graph.state import State


def stamp(ctx: Context, state: State) -> dict[str, Any]:
    """`{"data_versions": ...}` for the node's update: the versions the gate knows of the
    answer's sources now, before the query (a change during the query then moves past the
    stamp, and the answer is refreshed); None when there is no gate or a source is unknown."""
    gate, metric = ctx.data_versions, state.get("metric")
    if gate is None or metric is None:
        return {"data_versions": None}
    sources = sources_of(
        metric.definition.table,
        metric.name,
        state.get("backend", ""),
        state.get("generator", "compiled"),
    )
    return {"data_versions": gate.stamp(sources)}
