"""The widget / catalog / routing registry, by concern:

- `snapshot.py`: `RegistrySnapshot`, an immutable view with a content version.
- `routing.py`: the routing file loader, `widget_problems` (the one widget check: PUT, boot,
  seed) and boot validation (`validate_boot`).
- `store.py`: `RegistryStore`, the stateless repository: snapshots and single widgets read
  from PostgreSQL, one widget written (serialised per (tenant, id), audited); `CHANNEL`.
- `limits.py`: per-tenant `WidgetLimits` and `PreparedWidget` (a spec measured and hashed once).
- `audit.py`: the `audit_log` row each widget write appends in its own transaction.
- `holder.py`: `RegistryHolder`, the live Registry port: the one write path
  (`put_widget` / `delete_widget`: validate, limit, store, apply that one widget locally)
  and reloads that never undo a newer install; it runs the LISTEN/NOTIFY listener on
  `CHANNEL`, which re-reads only the widgets a notification names.
"""

from adapters.registry.audit import AuditEntry
from adapters.registry.holder import RegistryHolder
from adapters.registry.limits import LimitKind, WidgetLimitExceeded, WidgetLimits
from adapters.registry.routing import load_routing, validate_boot, widget_problems
from adapters.registry.snapshot import RegistrySnapshot
from adapters.registry.store import CATALOG_COLUMNS, CHANNEL, RegistryStore, metric_from_row

__all__ = [
    "CATALOG_COLUMNS",
    "CHANNEL",
    "AuditEntry",
    "LimitKind",
    "RegistryHolder",
    "RegistrySnapshot",
    "RegistryStore",
    "WidgetLimitExceeded",
    "WidgetLimits",
    "load_routing",
    "metric_from_row",
    "validate_boot",
    "widget_problems",
]
