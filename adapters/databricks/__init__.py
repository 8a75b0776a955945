"""The Databricks SQL warehouse adapter, by concern:

- `errors.py`: connector exceptions -> failure kinds (`classify`).
- `sessions.py`: the session (connection) pool and how sessions are opened.
- `warehouse.py`: `DatabricksWarehouse`, the `Warehouse` port (execute, ping, cancel).
"""

from adapters.databricks.errors import classify, http_status
from adapters.databricks.sessions import normalize_host, normalize_http_path
from adapters.databricks.warehouse import DatabricksWarehouse, to_result

__all__ = [
    "DatabricksWarehouse",
    "classify",
    "http_status",
    "normalize_host",
    "normalize_http_path",
    "to_result",
]
