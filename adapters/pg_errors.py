"""The one mapping of PostgreSQL errors to failure kinds (gateway, registry store, log).

QueryCanceled (statement_timeout)       -> postgres_timeout
PoolTimeout, OperationalError, OSError  -> postgres_unavailable (pool exhausted, link down)
any other psycopg.Error                 -> postgres_error (the server's message kept)
"""

from __future__ import annotations

import psycopg
import psycopg.errors
from psycopg_pool import PoolTimeout

from domain.failures import FailureKind, PostgresFailure


def error_text(exc: psycopg.Error) -> str:
    """The server's one-line message (e.g. 'relation "x" does not exist'), with its SQLSTATE."""
    lines = str(exc).strip().splitlines()
    message = exc.diag.message_primary or (lines[0] if lines else "")
    code = f" [{exc.sqlstate}]" if exc.sqlstate else ""
    return f"{type(exc).__name__}{code}: {message}" if message else type(exc).__name__


def postgres_failure(
    exc: psycopg.Error | OSError,
    *,
    what: str = "",
    statement_timeout_ms: int | None = None,
    pool_timeout_s: float | None = None,
) -> PostgresFailure:
    """The PostgresFailure for `exc`; `what` prefixes the detail (e.g. "registry store")."""
    prefix = f"{what}: " if what else ""
    if isinstance(exc, psycopg.errors.QueryCanceled):
        limit = f" the {statement_timeout_ms} ms" if statement_timeout_ms else " its"
        return PostgresFailure(
            f"{prefix}query exceeded{limit} statement timeout", kind=FailureKind.postgres_timeout
        )
    if isinstance(exc, PoolTimeout):
        within = f" within {pool_timeout_s:g}s" if pool_timeout_s else ""
        return PostgresFailure(
            f"{prefix}no PostgreSQL connection{within}", kind=FailureKind.postgres_unavailable
        )
    if isinstance(exc, psycopg.OperationalError | OSError):
        text = error_text(exc) if isinstance(exc, psycopg.Error) else f"{type(exc).__name__}: {exc}"
        return PostgresFailure(
            f"{prefix}PostgreSQL unreachable: {text}", kind=FailureKind.postgres_unavailable
        )
    return PostgresFailure(
        f"{prefix}PostgreSQL error: {error_text(exc)}", kind=FailureKind.postgres_error
    )
