"""An embedded PostgreSQL 16 for local runs (`make run` without a DATABASE_URL).

Uses the `pgserver` package, which ships real PostgreSQL binaries: `initdb` on first use,
`pg_ctl start` listening on a unix socket only (no TCP port), data kept in `data_dir`
across restarts.

Running as root: PostgreSQL refuses to run as root, so pgserver creates (via `useradd`) a
system user `pgserver`, runs initdb/pg_ctl as that user, chowns `data_dir` to it and adds
group/other read+traverse permission to every parent directory of `data_dir` (and to its
own bundled binaries). Nothing else is needed here; the first start as root therefore
needs `useradd` available.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import psycopg
from psycopg import sql

if TYPE_CHECKING:
    import pgserver

logger = logging.getLogger(__name__)

DEFAULT_DATABASE = "resolver"
CleanupMode = Literal["stop", "delete"] | None


def _pgserver() -> object:
    """Import pgserver lazily (it creates its runtime dir at import, warning when
    XDG_RUNTIME_DIR is unset, which is harmless: it falls back to /tmp/runtime-<uid>)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import pgserver

    return pgserver


def _quiet_pgserver() -> None:
    """pgserver logs every initdb / pg_ctl run at INFO, with its whole output (a cold start
    prints ~17 multi-line blocks): only its warnings and errors, unless we log at DEBUG."""
    if not logger.isEnabledFor(logging.DEBUG):
        logging.getLogger("pgserver").setLevel(logging.WARNING)


def _uri_for(server: pgserver.PostgresServer, database: str) -> str:
    return server.get_uri(database=database)


def ensure_database(admin_uri: str, database: str) -> None:
    """CREATE DATABASE unless it already exists."""
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if exists is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
            logger.info("created database %s", database)


def start_embedded_postgres(
    data_dir: Path,
    *,
    database: str = DEFAULT_DATABASE,
    cleanup_mode: CleanupMode = "stop",
) -> str:
    """Start (or attach to) the embedded server in `data_dir`; return a libpq URI for `database`.

    The URI is a unix-socket one (`postgresql://postgres:@/resolver?host=<socket dir>`),
    which psycopg accepts. With cleanup_mode="stop" the server is stopped when the last
    process using it exits; the data stays.
    """
    data_dir = Path(data_dir).expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    _quiet_pgserver()
    if not (data_dir / "PG_VERSION").exists():
        logger.info("first start: creating the embedded PostgreSQL in %s", data_dir)
    server = _pgserver().get_server(data_dir, cleanup_mode=cleanup_mode)  # type: ignore[attr-defined]
    ensure_database(_uri_for(server, "postgres"), database)
    uri = _uri_for(server, database)
    logger.info("embedded PostgreSQL ready at %s", uri)
    return uri


def stop_embedded_postgres(data_dir: Path) -> None:
    """Stop the embedded server this process started in `data_dir` (data kept unless the
    server was started with cleanup_mode="delete")."""
    key = Path(data_dir).expanduser().resolve()
    server = _pgserver().PostgresServer._instances.get(key)  # type: ignore[attr-defined]
    if server is not None:
        server.cleanup()
