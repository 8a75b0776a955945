"""The Databricks SQL warehouse, through the real `databricks-sql-connector`.

`DatabricksWarehouse` implements `domain.ports.Warehouse`. The connector is blocking,
so every call runs on a small dedicated thread pool, never on the event loop. Sessions
(connections) are pooled and reused across calls; one that fails at the transport level
is discarded and a fresh one is opened on the next call.

Limits, all enforced twice where the connector allows it:
- time: the session's server-side `STATEMENT_TIMEOUT` (query timeout + a margin) and a
  client-side guard that cancels the running statement and raises `databricks_timeout`;
  opening a session is bounded by `connect_timeout_s`, and the connector's HTTP retries
  are short so a dead warehouse fails within seconds, not minutes;
- rows: the cursor's `row_limit` (max_rows + 1, server side) and `fetchmany(max_rows + 1)`,
  which sets `truncated`.

Every expected connector failure becomes a `WarehouseFailure` with a kind:
`databricks_unavailable` (refused, DNS, timeouts, 429/5xx after retries),
`databricks_auth` (401/403), `databricks_timeout`, `databricks_error` (a FAILED statement
or another SQL error; the server's message is in the detail).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import urllib3
from databricks import sql as dbsql
from databricks.sql import exc as dbexc
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ReadTimeoutError,
)

from domain.failures import FailureKind, WarehouseFailure
from domain.jsonsafe import json_safe, portable_type, unique_names
from domain.results import Column, QueryResult

log = logging.getLogger(__name__)

# What the connector raises: its DB-API errors, and urllib3's MaxRetryError, which the
# Statement Execution (SEA) HTTP client re-raises as is once its retries are exhausted.
CONNECTOR_ERRORS: tuple[type[Exception], ...] = (dbexc.Error, MaxRetryError)
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (dbexc.RequestError, MaxRetryError)

USER_AGENT_ENTRY = "widget-data-resolver"
SERVER_TIMEOUT_MARGIN_S = 5  # the warehouse's own timeout fires after the client's
SEA_SYNC_WAIT_S = 10.0  # the connector asks the server to hold POST /statements this long
MAX_DETAIL = 1000
_CANCEL_WAIT_S = SEA_SYNC_WAIT_S + 5.0  # how long a cancel waits for a statement id


class _DropNullConversionWarnings(logging.Filter):
    """The SEA JSON path logs a warning for every NULL cell it converts; drop those."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Error converting value 'None'")


logging.getLogger("databricks.sql.backend.sea.utils.conversion").addFilter(
    _DropNullConversionWarnings()
)


# ------------------------------------------------------------------ pure helpers


def normalize_host(host: str, port: int | None = None) -> tuple[str, int]:
    """`adb-1.azuredatabricks.net`, `https://adb-1.../`, `http://127.0.0.1:8080` ->
    (`scheme://hostname`, port). The connector appends the port itself, so a port in the
    host moves to the second element; `port` wins over both."""
    raw = host.strip()
    if not raw:
        raise ValueError("Databricks host is empty")
    if "://" not in raw:
        raw = f"https://{raw}"
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not a Databricks host: {host!r}")
    hostname = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default_port = 443 if scheme == "https" else 80
    return f"{scheme}://{hostname}", port or parts.port or default_port


def normalize_http_path(http_path: str, *, use_sea: bool) -> str:
    """A leading slash; with SEA the path must name a SQL warehouse (`.../warehouses/<id>`)."""
    path = "/" + http_path.strip().lstrip("/")
    if use_sea and not re.search(r"/(warehouses|endpoints)/[^/?&]+", path):
        raise ValueError(f"Databricks http_path must name a SQL warehouse: {http_path!r}")
    return path


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


def _is_stale_session(exc: BaseException) -> bool:
    """A pooled session the server no longer knows (expired, warehouse restarted)."""
    return isinstance(exc, TRANSPORT_ERRORS) and http_status(exc) in (400, 404)


def column_type(type_code: Any) -> str:
    """The portable type of a `cursor.description` type code (`decimal`, `bigint`, ...)."""
    native = str(type_code or "").lower()
    if native.startswith("interval"):
        return "string"  # the connector hands intervals back as text
    return portable_type(native)


def _cell(value: Any, type_: str) -> Any:
    if type_ == "json" and isinstance(value, str):
        # JSON_ARRAY results carry ARRAY/MAP/STRUCT values as JSON text
        with contextlib.suppress(ValueError):
            return json_safe(json.loads(value))
    return json_safe(value)


def to_result(
    sql: str,
    description: Sequence[Sequence[Any]] | None,
    fetched: Sequence[Sequence[Any]],
    *,
    max_rows: int,
    meta: dict[str, Any] | None = None,
) -> QueryResult:
    """Rows fetched with `fetchmany(max_rows + 1)` -> a JSON-safe, capped QueryResult."""
    names = unique_names([str(d[0]) for d in description or ()])
    columns = [Column(n, column_type(d[1])) for n, d in zip(names, description or (), strict=True)]
    rows = [
        {c.name: _cell(v, c.type) for c, v in zip(columns, row, strict=False)}
        for row in fetched[:max_rows]
    ]
    return QueryResult(
        rows=rows,
        columns=columns,
        sql=sql,
        truncated=len(fetched) > max_rows,
        meta=dict(meta or {}),
    )


# ------------------------------------------------------------------ pool and tickets


@dataclass
class _Slot:
    """One pooled connection (a Databricks session)."""

    conn: Any
    created: float
    last_used: float
    uses: int = 0


@dataclass
class _Ticket:
    """One `execute` call, shared by the event loop and the worker thread running it."""

    sql: str
    max_rows: int
    on_connected: Callable[[], None]
    abandoned: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    cursor: Any = None


# ------------------------------------------------------------------ the adapter


class DatabricksWarehouse:
    """Runs checked Databricks SQL on a Databricks SQL warehouse. Raises WarehouseFailure."""

    name = "databricks"

    def __init__(
        self,
        *,
        server_hostname: str,
        http_path: str,
        access_token: str,
        port: int | None = None,
        query_timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        use_sea: bool = True,
        pool_size: int = 4,
        retry_attempts: int = 3,
        retry_delay_s: float = 0.5,
        retry_budget_s: float | None = None,
        max_session_uses: int = 1000,
        max_session_idle_s: float = 600.0,
    ) -> None:
        """`retry_attempts`/`retry_delay_s`/`retry_budget_s` tune the connector's HTTP
        retries (429/503/connection errors): at most `retry_attempts` tries, waiting
        `retry_delay_s` between them, all within `retry_budget_s` (default
        `connect_timeout_s`). A session is recycled after `max_session_uses` statements
        or `max_session_idle_s` seconds idle."""
        if query_timeout_s <= 0 or connect_timeout_s <= 0 or pool_size < 1:
            raise ValueError("timeouts must be positive and pool_size at least 1")
        if not access_token:
            raise ValueError("Databricks access token is empty")
        self._host, self._port = normalize_host(server_hostname, port)
        self._http_path = normalize_http_path(http_path, use_sea=use_sea)
        self._token = access_token
        self._use_sea = use_sea
        self._query_timeout_s = query_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._pool_size = pool_size
        self._retry_attempts = max(1, retry_attempts)
        self._retry_delay_s = retry_delay_s
        self._retry_budget_s = retry_budget_s if retry_budget_s is not None else connect_timeout_s
        self._max_session_uses = max_session_uses
        self._max_session_idle_s = max_session_idle_s
        self._read_timeout_s = max(query_timeout_s, SEA_SYNC_WAIT_S) + 5.0
        self._executor = ThreadPoolExecutor(
            max_workers=2 * pool_size, thread_name_prefix="databricks"
        )
        self._idle: list[_Slot] = []
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"DatabricksWarehouse(host={self._host!r}, port={self._port}, http_path={self._http_path!r})"

    # ---------------------------------------------------------------- public API

    async def execute(self, sql: str, *, max_rows: int) -> QueryResult:
        """Run one statement; at most `max_rows` rows come back (`truncated` if more)."""
        if max_rows < 0:
            raise ValueError("max_rows must be >= 0")
        if self._closed:
            raise RuntimeError("DatabricksWarehouse is closed")
        loop = asyncio.get_running_loop()
        connected: asyncio.Future[None] = loop.create_future()
        ticket = _Ticket(sql, max_rows, on_connected=_resolver(loop, connected))
        work = loop.run_in_executor(self._executor, self._work, ticket)
        work.add_done_callback(_consume_exception)
        waiters: set[asyncio.Future[Any]] = {connected, work}
        try:
            done, _ = await asyncio.wait(
                waiters,
                timeout=self._connect_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not done:
                ticket.abandoned.set()
                raise WarehouseFailure(
                    f"Databricks warehouse unavailable: no session within {self._connect_timeout_s:g}s",
                    kind=FailureKind.databricks_unavailable,
                )
            try:
                result = await asyncio.wait_for(asyncio.shield(work), self._query_timeout_s)
            except TimeoutError:
                self._abandon(ticket)
                raise WarehouseFailure(
                    f"Databricks query exceeded {self._query_timeout_s:g}s and was cancelled",
                    kind=FailureKind.databricks_timeout,
                ) from None
        except asyncio.CancelledError:
            self._abandon(ticket)
            raise
        finally:
            if not connected.done():
                connected.cancel()
        assert result is not None, "a worker that was not abandoned returns a result"
        return result

    async def ping(self) -> bool:
        try:
            await self.execute("SELECT 1", max_rows=1)
        except WarehouseFailure as exc:
            log.info("databricks ping failed: %r", exc)
            return False
        return True

    async def aclose(self) -> None:
        """Close pooled sessions and stop the worker threads (running calls are abandoned)."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            idle, self._idle = self._idle, []
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, _close_all, [s.conn for s in idle])
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ---------------------------------------------------------------- worker thread

    def _work(self, ticket: _Ticket) -> QueryResult | None:
        try:
            return self._work_inner(ticket)
        finally:
            ticket.done.set()

    def _work_inner(self, ticket: _Ticket) -> QueryResult | None:
        for attempt in (1, 2):
            slot, reused = self._checkout()
            ticket.on_connected()
            if ticket.abandoned.is_set():
                self._checkin(slot)
                return None
            try:
                result = self._run(slot, ticket)
            except CONNECTOR_ERRORS as exc:
                if not isinstance(exc, TRANSPORT_ERRORS):
                    # a SQL error, or the CANCELED end of a timed-out statement:
                    # the session itself is fine
                    self._checkin(slot)
                    if ticket.abandoned.is_set():
                        return None
                    raise classify(exc) from exc
                self._discard(slot)
                if ticket.abandoned.is_set():
                    return None
                if attempt == 1 and reused and _is_stale_session(exc):
                    # the warehouse forgot it (restart, expiry): so it did the other idle ones
                    log.info("databricks: pooled session went stale (%s); reopening", exc)
                    self._drain_idle()
                    continue
                raise classify(exc) from exc
            self._checkin(slot)
            return None if ticket.abandoned.is_set() else result
        raise AssertionError("unreachable")

    def _run(self, slot: _Slot, ticket: _Ticket) -> QueryResult | None:
        started = time.monotonic()
        cursor = slot.conn.cursor(row_limit=ticket.max_rows + 1)
        ticket.cursor = cursor
        try:
            cursor.execute(ticket.sql)
            if ticket.abandoned.is_set():
                return None
            description = cursor.description
            fetched = cursor.fetchmany(ticket.max_rows + 1) if description else []
            meta = {
                "engine": "databricks",
                "query_id": cursor.query_id,
                "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
            }
            return to_result(ticket.sql, description, fetched, max_rows=ticket.max_rows, meta=meta)
        finally:
            ticket.cursor = None
            try:
                cursor.close()
            except CONNECTOR_ERRORS as exc:
                log.debug("databricks: closing a cursor failed: %r", exc)

    def _cancel(self, ticket: _Ticket) -> None:
        """Cancel the ticket's statement once it has an id (the connector learns it only
        when POST /statements returns, which the server may hold for ~10 s)."""
        deadline = time.monotonic() + _CANCEL_WAIT_S
        while not ticket.done.is_set() and time.monotonic() < deadline:
            cursor = ticket.cursor
            if cursor is not None and cursor.active_command_id is not None:
                try:
                    cursor.cancel()
                except CONNECTOR_ERRORS as exc:
                    log.info("databricks: cancelling a statement failed: %r", exc)
                return
            time.sleep(0.05)

    def _abandon(self, ticket: _Ticket) -> None:
        ticket.abandoned.set()
        if not ticket.done.is_set():
            self._submit(self._cancel, ticket)

    # ---------------------------------------------------------------- session pool

    def _checkout(self) -> tuple[_Slot, bool]:
        now = time.monotonic()
        stale: list[_Slot] = []
        found: _Slot | None = None
        with self._lock:
            while self._idle:
                slot = self._idle.pop()
                if now - slot.last_used > self._max_session_idle_s:
                    stale.append(slot)
                    continue
                found = slot
                break
        for slot in stale:
            self._discard(slot)
        if found is not None:
            return found, True
        return self._open(), False

    def _checkin(self, slot: _Slot) -> None:
        slot.uses += 1
        slot.last_used = time.monotonic()
        with self._lock:
            keep = (
                not self._closed
                and slot.uses < self._max_session_uses
                and len(self._idle) < self._pool_size
            )
            if keep:
                self._idle.append(slot)
        if not keep:
            self._discard(slot)

    def _drain_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for slot in idle:
            self._discard(slot)

    def _discard(self, slot: _Slot) -> None:
        """Close a session in the background (against a dead server that takes retries)."""
        self._submit(_close_all, [slot.conn])

    def _submit(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            self._executor.submit(fn, *args)
        except RuntimeError:  # the executor is shut down: do it here
            fn(*args)

    def _open(self) -> _Slot:
        try:
            conn = dbsql.connect(**self._connect_kwargs())
        except CONNECTOR_ERRORS as exc:
            raise classify(exc, connecting=True) from exc
        self._set_http_timeouts(conn)
        now = time.monotonic()
        return _Slot(conn=conn, created=now, last_used=now)

    def _connect_kwargs(self) -> dict[str, Any]:
        server_timeout = math.ceil(self._query_timeout_s) + SERVER_TIMEOUT_MARGIN_S
        return {
            "server_hostname": self._host,
            "http_path": self._http_path,
            "access_token": self._token,
            "_port": self._port,
            "use_sea": self._use_sea,
            "enable_telemetry": False,
            "use_cloud_fetch": False,  # INLINE JSON_ARRAY results, no cloud storage links
            "enable_query_result_lz4_compression": False,
            "user_agent_entry": USER_AGENT_ENTRY,
            "session_configuration": {"STATEMENT_TIMEOUT": str(server_timeout)},
            "_socket_timeout": self._read_timeout_s,  # Thrift only
            # urllib3 counts retries, not tries
            "_retry_stop_after_attempts_count": self._retry_attempts - 1,
            "_retry_delay_min": self._retry_delay_s / 2,
            "_retry_delay_max": self._retry_delay_s,
            "_retry_stop_after_attempts_duration": self._retry_budget_s,
        }

    def _set_http_timeouts(self, conn: Any) -> None:
        """The SEA HTTP client sets no socket timeouts; give its urllib3 pool some, so a
        hung warehouse cannot hold a worker thread forever. Best effort: skipped if the
        connector's internals differ."""
        backend = getattr(getattr(conn, "session", None), "backend", None)
        pool = getattr(getattr(backend, "_http_client", None), "_pool", None)
        if isinstance(pool, urllib3.HTTPConnectionPool):
            pool.timeout = urllib3.Timeout(
                connect=self._connect_timeout_s, read=self._read_timeout_s
            )


# ------------------------------------------------------------------ module helpers


def _close_all(conns: list[Any]) -> None:
    for conn in conns:
        try:
            conn.close()
        except CONNECTOR_ERRORS as exc:
            log.debug("databricks: closing a session failed: %r", exc)


def _resolver(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None]) -> Callable[[], None]:
    """A thread-safe callback that resolves `fut` on its loop (no-op once the loop is gone)."""

    def _set() -> None:
        if not fut.done():
            fut.set_result(None)

    def call() -> None:
        with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile
            loop.call_soon_threadsafe(_set)

    return call


def _consume_exception(fut: asyncio.Future[Any]) -> None:
    """Abandoned calls finish later; fetch their exception so asyncio does not log it."""
    if not fut.cancelled():
        fut.exception()
