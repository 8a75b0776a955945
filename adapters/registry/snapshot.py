"""`RegistrySnapshot`: widgets + catalog (from PostgreSQL) + routing (from YAML), immutable,
with a content `version` (equal on every instance holding the same content)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from domain.identity import DEFAULT_TENANT
from domain.models import MetricDef, RoutingEntry, WidgetSpec

WidgetKey = tuple[str, str]  # (tenant, widget id): ids are unique per tenant


def _content_version(
    widgets: Mapping[WidgetKey, WidgetSpec],
    metrics: Mapping[str, MetricDef],
    routing: Mapping[str, RoutingEntry],
) -> str:
    doc = {
        "widgets": {"/".join(k): widgets[k].model_dump(mode="json") for k in sorted(widgets)},
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

    _widgets: Mapping[WidgetKey, WidgetSpec]
    _metrics: Mapping[str, MetricDef]
    _routing: Mapping[str, RoutingEntry]
    load_errors: tuple[str, ...] = ()
    _version: str = field(default="")

    @classmethod
    def build(
        cls,
        widgets: Mapping[WidgetKey, WidgetSpec] | Mapping[str, WidgetSpec],
        metrics: Mapping[str, MetricDef],
        routing: Mapping[str, RoutingEntry],
        load_errors: tuple[str, ...] = (),
    ) -> RegistrySnapshot:
        # plain ids (tests, one-tenant callers) belong to the default tenant
        w = {(k if isinstance(k, tuple) else (DEFAULT_TENANT, k)): v for k, v in widgets.items()}
        m, r = dict(metrics), dict(routing)
        return cls(
            MappingProxyType(w),
            MappingProxyType(m),
            MappingProxyType(r),
            tuple(load_errors),
            _content_version(w, m, r),
        )

    def widget(self, widget_id: str, tenant: str = DEFAULT_TENANT) -> WidgetSpec | None:
        return self._widgets.get((tenant, widget_id))

    def metric(self, metric_id: str) -> MetricDef | None:
        return self._metrics.get(metric_id)

    def routing(self, metric_id: str) -> RoutingEntry | None:
        return self._routing.get(metric_id)

    @property
    def version(self) -> str:
        return self._version

    def widgets(self, tenant: str = DEFAULT_TENANT) -> dict[str, WidgetSpec]:
        """One tenant's widgets by id."""
        return {wid: s for (t, wid), s in self._widgets.items() if t == tenant}

    def all_widgets(self) -> dict[WidgetKey, WidgetSpec]:
        return dict(self._widgets)

    def metrics(self) -> dict[str, MetricDef]:
        return dict(self._metrics)

    def routings(self) -> dict[str, RoutingEntry]:
        return dict(self._routing)

    def with_widget(
        self, widget_id: str, spec: WidgetSpec, tenant: str = DEFAULT_TENANT
    ) -> RegistrySnapshot:
        return self.build(
            {**self._widgets, (tenant, widget_id): spec},
            self._metrics,
            self._routing,
            self.load_errors,
        )

    def without_widget(self, widget_id: str, tenant: str = DEFAULT_TENANT) -> RegistrySnapshot:
        widgets = {k: v for k, v in self._widgets.items() if k != (tenant, widget_id)}
        return self.build(widgets, self._metrics, self._routing, self.load_errors)
