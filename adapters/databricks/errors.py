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
    ResponseError,
)

from domain.failures import FailureKind, WarehouseFailure

# What the connector raises: its DB-API errors, and urllib3's MaxRetryError, which the
# Statement Execution (SEA) HTTP client re-raises as is once its retries are exhausted.
CONNECTOR_ERRORS: tuple[type[Exception], ...] = (dbexc.Error, MaxRetryError)
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (dbexc.RequestError, MaxRetryError)
MAX_DETAIL = 1000


# Messages the connector and urllib3 build themselves from a response's status (never
# server text): "SEA HTTP request failed with status 401", "too many 503 error responses".
_SEA_STATUS = re.compile(r"SEA HTTP request failed with status (\d{3})")
_TOO_MANY = re.compile(r"too many (\d{3}) error responses")


def _retry_status(exc: MaxRetryError) -> int | None:
    reason = exc.reason
    if isinstance(reason, ResponseError):
        m = _TOO_MANY.fullmatch(str(reason))
        return int(m.group(1)) if m else None
    return None


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of the response behind a connector failure, from its structure:
    the Thrift client's `context["http-code"]`, the SEA client's wrapped original exception
    (built by the client from `response.status`), or urllib3's retry error. A FAILED
    statement is not an HTTP failure: its message is server text and is never parsed."""
    if isinstance(exc, MaxRetryError):
        return _retry_status(exc)
    if not isinstance(exc, dbexc.RequestError):
        return None
    code = exc.context.get("http-code") if isinstance(exc.context, dict) else None
    if isinstance(code, int):
        return code
    for inner in exc.args[1:]:  # RequestError(message, context, host_url, original)
        if isinstance(inner, MaxRetryError):
            return _retry_status(inner)
        if isinstance(inner, Exception) and not isinstance(inner, dbexc.Error):
            m = _SEA_STATUS.fullmatch(str(inner))
            if m:
                return int(m.group(1))
    return None


# "Command failed: <error_code> - [<ERROR_CLASS>] message" (the SEA backend's format)
_COMMAND_FAILED = re.compile(r"Command failed: ([A-Z_]+) - (?:\[([A-Z_.]+)\])?", re.DOTALL)
TIMEOUT_CODES = frozenset({"DEADLINE_EXCEEDED"})
TIMEOUT_CLASSES = frozenset({"STATEMENT_TIMEOUT"})


def _is_statement_timeout(exc: BaseException) -> bool:
    if not isinstance(exc, dbexc.ServerOperationError):
        return False
    m = _COMMAND_FAILED.match(exc.message or "")
    if m:
        return m.group(1) in TIMEOUT_CODES or (m.group(2) or "") in TIMEOUT_CLASSES
    # the Thrift path: the error class leads the server's message
    head = re.match(r"\[([A-Z_.]+)\]", exc.message or "")
    return bool(head and head.group(1) in TIMEOUT_CLASSES)


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
    if _is_statement_timeout(exc):
        return WarehouseFailure(
            f"Databricks statement timed out: {message}", kind=FailureKind.databricks_timeout
        )
    return WarehouseFailure(
        f"Databricks query failed: {message}", kind=FailureKind.databricks_error
    )


def is_stale_session(exc: BaseException) -> bool:
    """A pooled session the server no longer knows (expired, warehouse restarted)."""
    return isinstance(exc, TRANSPORT_ERRORS) and http_status(exc) in (400, 404)
