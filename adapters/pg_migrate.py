"""Versioned, idempotent schema migrations for the resolver's PostgreSQL database.

Each `adapters/migrations/NNNN_name.sql` file is applied at most once, in its own
transaction, recorded in `schema_migrations`. Every transaction first takes a
transaction-scoped advisory lock, so two instances booting together apply each file once
(the second waits, then sees the version recorded and skips it).

CLI: `python -m adapters.pg_migrate [CONNINFO]` (default: $DATABASE_URL).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# A fixed key ("WDR_MIGR") shared by every instance for pg_advisory_xact_lock.
MIGRATION_LOCK_KEY = 0x5744525F4D494752
_FILE_RE = re.compile(r"^(\d{4})_[A-Za-z0-9_]+\.sql$")

_CREATE_VERSIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: str  # the file stem, e.g. "0001_init"
    sql: str


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files in version order. Names must look like `0001_name.sql`."""
    found: list[Migration] = []
    numbers: set[str] = set()
    for path in sorted(directory.glob("*.sql")):
        m = _FILE_RE.match(path.name)
        if not m:
            raise ValueError(f"migration file {path.name!r} must be named NNNN_name.sql")
        if m.group(1) in numbers:
            raise ValueError(f"two migration files share the number {m.group(1)}")
        numbers.add(m.group(1))
        found.append(Migration(version=path.stem, sql=path.read_text(encoding="utf-8")))
    return found


async def _apply_one(conn: psycopg.AsyncConnection, migration: Migration) -> bool:
    """Apply one migration unless already recorded. True when applied now."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        await conn.execute(_CREATE_VERSIONS)
        cur = await conn.execute(
            "SELECT 1 FROM schema_migrations WHERE version = %s", (migration.version,)
        )
        if await cur.fetchone() is not None:
            return False
        # No parameters: sent with the simple query protocol, so a file may hold many statements.
        await conn.execute(migration.sql.encode("utf-8"))
        await conn.execute(
            "INSERT INTO schema_migrations (version) VALUES (%s)", (migration.version,)
        )
    logger.info("applied migration %s", migration.version)
    return True


async def migrate(conninfo: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; returns the versions applied by this call."""
    migrations = await asyncio.to_thread(load_migrations, directory)
    applied: list[str] = []
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        for migration in migrations:
            if await _apply_one(conn, migration):
                applied.append(migration.version)
    return applied


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    conninfo = args[0] if args else os.environ.get("DATABASE_URL", "")
    if not conninfo:
        print(
            "usage: python -m adapters.pg_migrate CONNINFO (or set DATABASE_URL)", file=sys.stderr
        )
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    applied = asyncio.run(migrate(conninfo))
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
