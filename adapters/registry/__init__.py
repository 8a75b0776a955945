"""The widget / catalog / routing registry, by concern:

- `snapshot.py`: `RegistrySnapshot`, an immutable view with a content version.
- `routing.py`: the routing file loader and boot validation (`validate_boot`).
- `store.py`: `RegistryStore`, snapshots read from PostgreSQL, widget rows written; `CHANNEL`.
- `audit.py`: the `audit_log` row each widget write appends in its own transaction.
- `holder.py`: `RegistryHolder`, the live Registry port: the one write path
  (`put_widget` / `delete_widget`: validate, store, apply locally) and reloads that never
  undo a newer install; it runs the LISTEN/NOTIFY listener on `CHANNEL`.
"""

from adapters.registry.audit import AuditEntry
from adapters.registry.holder import RegistryHolder
from adapters.registry.routing import load_routing, validate_boot
from adapters.registry.snapshot import RegistrySnapshot
from adapters.registry.store import CATALOG_COLUMNS, CHANNEL, RegistryStore, metric_from_row

__all__ = [
    "CATALOG_COLUMNS",
    "CHANNEL",
    "AuditEntry",
    "RegistryHolder",
    "RegistrySnapshot",
    "RegistryStore",
    "load_routing",
    "metric_from_row",
    "validate_boot",
]
