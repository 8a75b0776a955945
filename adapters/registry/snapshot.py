"""`RegistrySnapshot`: widgets + catalog (from PostgreSQL) + routing (from YAML), immutable,
with a content `version` (equal on every instance holding the same content).

Widgets are kept per tenant, each with the SHA-256 of its canonical JSON (`spec_digest`,
computed once when the widget is read or written). A change to one widget copies only its
tenant's mapping and re-hashes only digests (one tenant's, then one per tenant), never the
specs themselves: one tenant's large widgets cost nothing when another tenant writes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from domain.identity import DEFAULT_TENANT
from domain.models import MetricDef, RoutingEntry, WidgetSpec

WidgetKey = tuple[str, str]  # (tenant, widget id): ids are unique per tenant
Digested = tuple[WidgetSpec, str]  # a spec and its `spec_digest`
# One widget's change: its new spec and digest, or None when it is gone.
WidgetChange = tuple[WidgetKey, Digested | None]

_EMPTY: Mapping[str, Digested] = MappingProxyType({})


def canonical_json(raw: object) -> bytes:
    return json.dumps(raw, sort_keys=True, separators=(",", ":")).encode()


def spec_digest(spec: WidgetSpec) -> str:
    """SHA-256 (hex) of the spec's canonical JSON: the snapshot's and the audit log's hash."""
    return hashlib.sha256(canonical_json(spec.model_dump(mode="json"))).hexdigest()


def _digest_lines(lines: Iterable[str]) -> str:
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode())
        h.update(b"\n")
    return h.hexdigest()


def _tenant_digest(widgets: Mapping[str, Digested]) -> str:
    return _digest_lines(f"{wid}={widgets[wid][1]}" for wid in sorted(widgets))


def _catalog_digest(metrics: Mapping[str, MetricDef], routing: Mapping[str, RoutingEntry]) -> str:
    doc = {
        "metrics": {k: metrics[k].model_dump(mode="json") for k in sorted(metrics)},
        "routing": {k: routing[k].model_dump(mode="json") for k in sorted(routing)},
    }
    return hashlib.sha256(canonical_json(doc)).hexdigest()


def _version(catalog: str, tenant_digests: Mapping[str, str]) -> str:
    lines = [catalog, *(f"{t}={tenant_digests[t]}" for t in sorted(tenant_digests))]
    return _digest_lines(lines)[:16]


@dataclass(frozen=True, eq=False)
class RegistrySnapshot:
    """An immutable view of widgets, catalog and routing. Implements domain.ports.Registry.

    `load_errors` names stored rows that failed validation (they are left out); boot
    validation reports them. Build it with `build`; change widgets with `with_changes`
    (or `with_widget` / `without_widget`), which return a new snapshot.
    """

    _tenants: Mapping[str, Mapping[str, Digested]]
    _metrics: Mapping[str, MetricDef]
    _routing: Mapping[str, RoutingEntry]
    load_errors: tuple[str, ...] = ()
    _catalog_digest: str = ""
    _tenant_digests: Mapping[str, str] = field(default_factory=dict)
    _version: str = ""

    @classmethod
    def build(
        cls,
        widgets: Mapping[WidgetKey, WidgetSpec] | Mapping[str, WidgetSpec],
        metrics: Mapping[str, MetricDef],
        routing: Mapping[str, RoutingEntry],
        load_errors: tuple[str, ...] = (),
        *,
        digests: Mapping[WidgetKey, str] | None = None,
    ) -> RegistrySnapshot:
        """`digests` (each widget's `spec_digest`, when already known) saves re-hashing."""
        tenants: dict[str, dict[str, Digested]] = {}
        for key, spec in widgets.items():
            # plain ids (tests, one-tenant callers) belong to the default tenant
            tenant, wid = key if isinstance(key, tuple) else (DEFAULT_TENANT, key)
            known = digests.get((tenant, wid)) if digests is not None else None
            tenants.setdefault(tenant, {})[wid] = (spec, known or spec_digest(spec))
        m, r = dict(metrics), dict(routing)
        frozen = {t: MappingProxyType(w) for t, w in tenants.items()}
        tenant_digests = {t: _tenant_digest(w) for t, w in frozen.items()}
        catalog = _catalog_digest(m, r)
        return cls(
            MappingProxyType(frozen),
            MappingProxyType(m),
            MappingProxyType(r),
            tuple(load_errors),
            catalog,
            MappingProxyType(tenant_digests),
            _version(catalog, tenant_digests),
        )

    def widget(self, widget_id: str, tenant: str = DEFAULT_TENANT) -> WidgetSpec | None:
        got = self._tenants.get(tenant, _EMPTY).get(widget_id)
        return got[0] if got is not None else None

    def metric(self, metric_id: str) -> MetricDef | None:
        return self._metrics.get(metric_id)

    def routing(self, metric_id: str) -> RoutingEntry | None:
        return self._routing.get(metric_id)

    @property
    def version(self) -> str:
        return self._version

    def widgets(self, tenant: str = DEFAULT_TENANT) -> dict[str, WidgetSpec]:
        """One tenant's widgets by id."""
        return {wid: s for wid, (s, _) in self._tenants.get(tenant, _EMPTY).items()}

    def widget_count(self, tenant: str = DEFAULT_TENANT) -> int:
        return len(self._tenants.get(tenant, _EMPTY))

    def all_widgets(self) -> dict[WidgetKey, WidgetSpec]:
        return {(t, wid): s for t, ws in self._tenants.items() for wid, (s, _) in ws.items()}

    def keys_with_id(self, widget_id: str) -> list[WidgetKey]:
        """Every tenant's key for `widget_id` (a NOTIFY names the id, not the tenant)."""
        return [(t, widget_id) for t, ws in self._tenants.items() if widget_id in ws]

    def metrics(self) -> dict[str, MetricDef]:
        return dict(self._metrics)

    def routings(self) -> dict[str, RoutingEntry]:
        return dict(self._routing)

    def with_changes(self, changes: Iterable[WidgetChange]) -> RegistrySnapshot:
        """This snapshot with some widgets set or removed: only the tenants they belong to
        are copied and re-hashed (from digests), whatever the size of the others."""
        touched: dict[str, dict[str, Digested]] = {}
        for (tenant, wid), new in changes:
            ws = touched.get(tenant)
            if ws is None:
                ws = touched[tenant] = dict(self._tenants.get(tenant, _EMPTY))
            if new is None:
                ws.pop(wid, None)
            else:
                ws[wid] = new
        if not touched:
            return self
        tenants = dict(self._tenants)
        tenant_digests = dict(self._tenant_digests)
        for tenant, ws in touched.items():
            if ws:
                tenants[tenant] = MappingProxyType(ws)
                tenant_digests[tenant] = _tenant_digest(ws)
            else:
                tenants.pop(tenant, None)
                tenant_digests.pop(tenant, None)
        return RegistrySnapshot(
            MappingProxyType(tenants),
            self._metrics,
            self._routing,
            self.load_errors,
            self._catalog_digest,
            MappingProxyType(tenant_digests),
            _version(self._catalog_digest, tenant_digests),
        )

    def with_widget(
        self,
        widget_id: str,
        spec: WidgetSpec,
        tenant: str = DEFAULT_TENANT,
        digest: str | None = None,
    ) -> RegistrySnapshot:
        return self.with_changes([((tenant, widget_id), (spec, digest or spec_digest(spec)))])

    def without_widget(self, widget_id: str, tenant: str = DEFAULT_TENANT) -> RegistrySnapshot:
        return self.with_changes([((tenant, widget_id), None)])
