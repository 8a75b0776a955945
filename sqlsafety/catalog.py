"""The default allowlist: the tables the metric catalog (config/metrics.yaml) reads.

Three-part ``definition.table`` names are the Databricks allowlist, the others (e.g.
``kpi_metrics_history``) the Postgres one. The config directory is `RESOLVER_CONFIG_DIR`
(or the service's `CONFIG_DIR`) when set, else ``<repo root>/config``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from sqlsafety.errors import PolicyError
from sqlsafety.names import DIALECTS

REPO_ROOT = Path(__file__).resolve().parents[1]


def config_dir() -> Path:
    override = os.environ.get("RESOLVER_CONFIG_DIR") or os.environ.get("CONFIG_DIR")
    return Path(override) if override else REPO_ROOT / "config"


def catalog_tables(path: Path | None = None) -> list[str]:
    """Every `definition.table` in the metrics catalog, in file order."""
    doc: Any = yaml.safe_load((path or config_dir() / "metrics.yaml").read_text())
    metrics = (doc or {}).get("metrics") or []
    return [
        str(m["definition"]["table"]) for m in metrics if (m.get("definition") or {}).get("table")
    ]


def default_allowlist(dialect: str, path: Path | None = None) -> frozenset[str]:
    """The catalog's tables for `dialect`: three-part names for databricks, the rest for postgres."""
    if dialect not in DIALECTS:
        raise PolicyError(f"unsupported dialect {dialect!r}")
    three_part = dialect == "databricks"
    return frozenset(t for t in catalog_tables(path) if (t.count(".") == 2) == three_part)
