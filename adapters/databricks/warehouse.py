"""`DatabricksWarehouse`: runs one checked statement on a Databricks SQL warehouse through
the real databricks-sql-connector (implements `domain.ports.Warehouse`).

The connector is blocking, so every call runs on a small dedicated thread pool, never on
the event loop; sessions come from `SessionPool`. Limits, enforced twice where the
connector allows it:
- time: the session's server-side `STATEMENT_TIMEOUT` (query timeout + a margin) and a
  client-side guard that cancels the running statement and raises `databricks_timeout`;
  opening a session is bounded by `connect_timeout_s`, and the connector's HTTP retries
  are short so a dead warehouse fails within seconds, not minutes;
- rows: the cursor's `row_limit` (max_rows + 1, server side) and `fetchmany(max_rows + 1)`,
  which sets `truncated`.
Failures are classified by adapters/databricks/errors.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from adapters.databricks.errors import (
    CONNECTOR_ERRORS,
    TRANSPORT_ERRORS,
    classify,
    is_stale_session,
)
from adapters.databricks.sessions import (
    SessionPool,
    Slot,
    check_transport,
    close_all,
    normalize_host,
    normalize_http_path,
)
from domain.failures import FailureKind, WarehouseFailure
from domain.jsonsafe import json_safe, portable_type, unique_names
from domain.ports import TableSchema
from domain.results import Column, QueryResult
from observability.redact import loggable_error

log = logging.getLogger("adapters.databricks")

# which process ran a statement (its query_tags `instance`: host:pid)
INSTANCE = f"{socket.gethostname()}:{os.getpid()}"
SEA_SYNC_WAIT_S = 10.0  # the connector asks the server to hold POST /statements this long
_CANCEL_WAIT_S = SEA_SYNC_WAIT_S + 5.0  # how long a cancel waits for a statement id


class _DropNullConversionWarnings(logging.Filter):
    """The SEA JSON path logs a warning for every NULL cell it converts; drop those."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Error converting value 'None'")


_NULL_FILTER = _DropNullConversionWarnings()


def quiet_null_conversion_warnings() -> None:
    """Installed when a warehouse is built (not at import): idempotent."""
    logger = logging.getLogger("databricks.sql.backend.sea.utils.conversion")
    if _NULL_FILTER not in logger.filters:
        logger.addFilter(_NULL_FILTER)


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


@dataclass
class _Ticket:
    """One `execute` call, shared by the event loop and the worker thread running it."""

    sql: str
    max_rows: int
    on_connected: Callable[[], None]
    tags: dict[str, str] = field(default_factory=dict)
    abandoned: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    cursor: Any = None


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
        transport: str = "thrift",
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
        self.transport = check_transport(transport)
        # Statement Execution paths (sea, kernel) address a SQL warehouse by id
        self._http_path = normalize_http_path(http_path, use_sea=self.transport != "thrift")
        self._query_timeout_s = query_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._executor = ThreadPoolExecutor(
            max_workers=2 * pool_size, thread_name_prefix="databricks"
        )
        self._sessions = SessionPool(
            self._executor,
            host=self._host,
            port=self._port,
            http_path=self._http_path,
            token=access_token,
            transport=self.transport,
            query_timeout_s=query_timeout_s,
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=max(query_timeout_s, SEA_SYNC_WAIT_S) + 5.0,
            size=pool_size,
            retry_attempts=max(1, retry_attempts),
            retry_delay_s=retry_delay_s,
            retry_budget_s=retry_budget_s if retry_budget_s is not None else connect_timeout_s,
            max_uses=max_session_uses,
            max_idle_s=max_session_idle_s,
        )
        self._closed = False
        quiet_null_conversion_warnings()

    def __repr__(self) -> str:
        return f"DatabricksWarehouse(host={self._host!r}, port={self._port}, http_path={self._http_path!r})"

    # ---------------------------------------------------------------- public API

    async def execute(
        self, sql: str, *, max_rows: int, tags: Mapping[str, str] | None = None
    ) -> QueryResult:
        """Run one statement; at most `max_rows` rows come back (`truncated` if more).
        `tags` become the statement's `query_tags` (in `system.query.history`)."""
        if max_rows < 0:
            raise ValueError("max_rows must be >= 0")
        if self._closed:
            raise RuntimeError("DatabricksWarehouse is closed")
        loop = asyncio.get_running_loop()
        connected: asyncio.Future[None] = loop.create_future()
        ticket = _Ticket(
            sql,
            max_rows,
            on_connected=_resolver(loop, connected),
            tags=dict(tags or {}) | {"instance": INSTANCE} if tags else {},
        )
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

    async def describe(self, tables: Sequence[str]) -> tuple[TableSchema, ...]:
        """The columns of `tables` as the warehouse's own catalog reports them (`DESCRIBE
        TABLE`); a table it does not know is left out. Raises WarehouseFailure when the
        warehouse cannot be reached."""
        out = []
        for name in tables:
            quoted = ".".join("`" + part.replace("`", "``") + "`" for part in name.split("."))
            try:
                result = await self.execute(f"DESCRIBE TABLE {quoted}", max_rows=1000)
            except WarehouseFailure as exc:
                if exc.kind != FailureKind.databricks_error:  # unreachable, auth, timeout
                    raise
                log.warning("databricks: cannot describe %s: %s", name, loggable_error(exc))
                continue
            first, second = (c.name for c in result.columns[:2])
            columns = []
            for row in result.rows:
                col = str(row.get(first) or "")
                if not col or col.startswith("#"):  # partition / detail sections follow
                    break
                columns.append((col, str(row.get(second) or "").upper()))
            if columns:
                out.append(TableSchema(name=name, columns=tuple(columns)))
        return tuple(out)

    async def ping(self) -> bool:
        try:
            await self.execute("SELECT 1", max_rows=1)
        except WarehouseFailure as exc:
            log.info("databricks ping failed: %s", loggable_error(exc))
            return False
        return True

    async def aclose(self) -> None:
        """Close pooled sessions and stop the worker threads (running calls are abandoned)."""
        if self._closed:
            return
        self._closed = True
        idle = self._sessions.close()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, close_all, idle)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ---------------------------------------------------------------- worker thread

    def _work(self, ticket: _Ticket) -> QueryResult | None:
        try:
            return self._work_inner(ticket)
        finally:
            ticket.done.set()

    def _work_inner(self, ticket: _Ticket) -> QueryResult | None:
        for attempt in (1, 2):
            slot, reused = self._sessions.checkout()
            ticket.on_connected()
            if ticket.abandoned.is_set():
                self._sessions.checkin(slot)
                return None
            try:
                result = self._run(slot, ticket)
            except CONNECTOR_ERRORS as exc:
                if not isinstance(exc, TRANSPORT_ERRORS):
                    # a SQL error, or the CANCELED end of a timed-out statement:
                    # the session itself is fine
                    self._sessions.checkin(slot)
                    if ticket.abandoned.is_set():
                        return None
                    raise classify(exc) from exc
                self._sessions.discard(slot)
                if ticket.abandoned.is_set():
                    return None
                if attempt == 1 and reused and is_stale_session(exc):
                    # the warehouse forgot it (restart, expiry): so it did the other idle ones
                    log.info(
                        "databricks: pooled session went stale (%s); reopening", loggable_error(exc)
                    )
                    self._sessions.drain_idle()
                    continue
                raise classify(exc) from exc
            self._sessions.checkin(slot)
            return None if ticket.abandoned.is_set() else result
        raise AssertionError("unreachable")

    def _run(self, slot: Slot, ticket: _Ticket) -> QueryResult | None:
        started = time.monotonic()
        cursor = slot.conn.cursor(row_limit=ticket.max_rows + 1)
        ticket.cursor = cursor
        try:
            cursor.execute(ticket.sql, query_tags=dict(ticket.tags) or None)
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
            self._sessions.submit(self._cancel, ticket)


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
