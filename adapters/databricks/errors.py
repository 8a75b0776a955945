"""Classify what databricks-sql-connector raises into failure kinds (pure).

`databricks_unavailable` (refused, DNS, timeouts, 429/5xx after retries), `databricks_auth`
(401/403), `databricks_timeout`, `databricks_error` (a FAILED statement or another SQL
error; the server's message is in the detail).
"""

from __future__ import annotations

import re

from databricks.sql import exc as dbexc
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ReadTimeoutError,
)

from domain.failures import FailureKind, WarehouseFailure

# What the connector raises: its DB-API errors, and urllib3's MaxRetryError, which the
# Statement Execution (SEA) HTTP client re-raises as is once its retries are exhausted.
CONNECTOR_ERRORS: tuple[type[Exception], ...] = (dbexc.Error, MaxRetryError)
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (dbexc.RequestError, MaxRetryError)
MAX_DETAIL = 1000


def http_status(exc: BaseException) -> int | None:
    """The HTTP status behind a connector failure, if one is known.

    The SEA client reports it only in text ("... failed with status 401", or urllib3's
    "too many 503 error responses"); the Thrift client puts it in `context["http-code"]`.
    """
    if isinstance(exc, dbexc.Error):
        code = exc.context.get("http-code") if isinstance(exc.context, dict) else None
        if isinstance(code, int):
            return code
        text = " ".join(str(a) for a in exc.args)
    elif isinstance(exc, MaxRetryError):
        text = str(exc.reason)
    else:
        text = str(exc)
    m = re.search(r"\b(?:status|too many) (\d{3})\b", text)
    return int(m.group(1)) if m else None


def _message(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, dbexc.Error) else str(exc)
    return (text or type(exc).__name__)[:MAX_DETAIL]


def _transport_reason(exc: BaseException, status: int | None) -> str:
    reason = exc.reason if isinstance(exc, MaxRetryError) else None
    if isinstance(reason, NameResolutionError):
        return "host name could not be resolved"
    if isinstance(reason, NewConnectionError):
        return "connection failed (refused or unreachable)"
    if isinstance(reason, ConnectTimeoutError):
        return "connect timed out"
    if isinstance(reason, ReadTimeoutError):
        return "no response (read timed out)"
    if status is not None:
        return f"HTTP {status}"
    if isinstance(exc, dbexc.MaxRetryDurationError):
        return "retries exhausted"
    return _message(exc)


_TIMEOUT_WORDS = re.compile(r"STATEMENT_TIMEOUT|DEADLINE_EXCEEDED|timed out", re.IGNORECASE)


def classify(exc: BaseException, *, connecting: bool = False) -> WarehouseFailure:
    """Map one connector exception to a WarehouseFailure kind (pure)."""
    status = http_status(exc)
    if status in (401, 403):
        return WarehouseFailure(
            f"Databricks rejected the credentials (HTTP {status})",
            kind=FailureKind.databricks_auth,
        )
    if isinstance(exc, TRANSPORT_ERRORS):
        if connecting or status is None or status >= 500 or status == 429:
            return WarehouseFailure(
                f"Databricks warehouse unavailable: {_transport_reason(exc, status)}",
                kind=FailureKind.databricks_unavailable,
            )
        return WarehouseFailure(
            f"Databricks rejected the request (HTTP {status}): {_message(exc)}",
            kind=FailureKind.databricks_error,
        )
    if connecting:
        return WarehouseFailure(
            f"could not open a Databricks session: {_message(exc)}",
            kind=FailureKind.databricks_unavailable,
        )
    message = _message(exc)
    if isinstance(exc, dbexc.ServerOperationError) and _TIMEOUT_WORDS.search(message):
        return WarehouseFailure(
            f"Databricks statement timed out: {message}", kind=FailureKind.databricks_timeout
        )
    return WarehouseFailure(
        f"Databricks query failed: {message}", kind=FailureKind.databricks_error
    )


def is_stale_session(exc: BaseException) -> bool:
    """A pooled session the server no longer knows (expired, warehouse restarted)."""
    return isinstance(exc, TRANSPORT_ERRORS) and http_status(exc) in (400, 404)
