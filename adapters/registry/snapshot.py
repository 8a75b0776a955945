"""`RegistrySnapshot`: widgets + catalog (from PostgreSQL) + routing (from YAML), immutable,
with a content `version` (equal on every instance holding the same content)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from domain.models import MetricDef, RoutingEntry, WidgetSpec


def _content_version(
    widgets: Mapping[str, WidgetSpec],
    metrics: Mapping[str, MetricDef],
    routing: Mapping[str, RoutingEntry],
) -> str:
    doc = {
        "widgets": {k: widgets[k].model_dump(mode="json") for k in sorted(widgets)},
        "metrics": {k: metrics[k].model_dump(mode="json") for k in sorted(metrics)},
        "routing": {k: routing[k].model_dump(mode="json") for k in sorted(routing)},
    }
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class RegistrySnapshot:
    """An immutable view of widgets, catalog and routing. Implements domain.ports.Registry.

    `load_errors` names stored rows that failed validation (they are left out); boot
    validation reports them.
    """

    _widgets: Mapping[str, WidgetSpec]
    _metrics: Mapping[str, MetricDef]
    _routing: Mapping[str, RoutingEntry]
    load_errors: tuple[str, ...] = ()
    _version: str = field(default="")

    @classmethod
    def build(
        cls,
        widgets: Mapping[str, WidgetSpec],
        metrics: Mapping[str, MetricDef],
        routing: Mapping[str, RoutingEntry],
        load_errors: tuple[str, ...] = (),
    ) -> RegistrySnapshot:
        w, m, r = dict(widgets), dict(metrics), dict(routing)
        return cls(
            MappingProxyType(w),
            MappingProxyType(m),
            MappingProxyType(r),
            tuple(load_errors),
            _content_version(w, m, r),
        )

    def widget(self, widget_id: str) -> WidgetSpec | None:
        return self._widgets.get(widget_id)

    def metric(self, metric_id: str) -> MetricDef | None:
        return self._metrics.get(metric_id)

    def routing(self, metric_id: str) -> RoutingEntry | None:
        return self._routing.get(metric_id)

    @property
    def version(self) -> str:
        return self._version

    def widgets(self) -> dict[str, WidgetSpec]:
        return dict(self._widgets)

    def metrics(self) -> dict[str, MetricDef]:
        return dict(self._metrics)

    def routings(self) -> dict[str, RoutingEntry]:
        return dict(self._routing)

    def with_widget(self, widget_id: str, spec: WidgetSpec) -> RegistrySnapshot:
        return self.build(
            {**self._widgets, widget_id: spec}, self._metrics, self._routing, self.load_errors
        )

    def without_widget(self, widget_id: str) -> RegistrySnapshot:
        widgets = {k: v for k, v in self._widgets.items() if k != widget_id}
        return self.build(widgets, self._metrics, self._routing, self.load_errors)
