"""Pooled Databricks sessions (connections of databricks-sql-connector), opened with
bounded timeouts and short HTTP retries, reused across statements, recycled after
`max_uses` statements or `max_idle_s` idle, and closed in the background when discarded.
Blocking: every method runs on the warehouse's worker threads, never on the event loop.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import databricks.sql.client  # noqa: F401 - see below
import urllib3
from databricks import sql as dbsql

from adapters.databricks.errors import CONNECTOR_ERRORS, classify

log = logging.getLogger("adapters.databricks")
# The connector imports its client (and pandas, ~2-3 s) on the first connect: importing it
# here moves that cost to boot instead of into the first statement's connect deadline.

USER_AGENT_ENTRY = "widget-data-resolver"
SERVER_TIMEOUT_MARGIN_S = 5  # the warehouse's own timeout fires after the client's


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


# How the connector reaches the warehouse. `thrift`: the connector's default backend (the
# production default); `kernel`: `use_kernel=True`, the connector's supported Statement
# Execution path (needs the `databricks-sql-connector[kernel]` extra); `sea`: `use_sea=True`,
# the deprecated pure-Python Statement Execution client, only where asked for (the local
# Statement Execution server the tests and benchmarks use speaks it).
Transport = Literal["thrift", "kernel", "sea"]
TRANSPORTS: tuple[Transport, ...] = ("thrift", "kernel", "sea")


def check_transport(transport: str) -> Transport:
    """The transport, or ValueError naming what is wrong (unknown, or kernel not installed)."""
    if transport not in TRANSPORTS:
        raise ValueError(
            f"unknown Databricks transport {transport!r} (expected one of {TRANSPORTS})"
        )
    if transport == "kernel" and importlib.util.find_spec("databricks_sql_kernel") is None:
        raise ValueError(
            "Databricks transport 'kernel' needs the connector's kernel extension: "
            "pip install 'databricks-sql-connector[kernel]'"
        )
    return transport  # type: ignore[return-value]


def normalize_http_path(http_path: str, *, use_sea: bool) -> str:
    """A leading slash; with SEA the path must name a SQL warehouse (`.../warehouses/<id>`)."""
    path = "/" + http_path.strip().lstrip("/")
    if use_sea and not re.search(r"/(warehouses|endpoints)/[^/?&]+", path):
        raise ValueError(f"Databricks http_path must name a SQL warehouse: {http_path!r}")
    return path


@dataclass
class Slot:
    """One pooled connection (a Databricks session)."""

    conn: Any
    last_used: float
    uses: int = 0


class SessionPool:
    def __init__(
        self,
        executor: ThreadPoolExecutor,
        *,
        host: str,
        port: int,
        http_path: str,
        token: str,
        transport: Transport,
        query_timeout_s: float,
        connect_timeout_s: float,
        read_timeout_s: float,
        size: int,
        retry_attempts: int,
        retry_delay_s: float,
        retry_budget_s: float,
        max_uses: int,
        max_idle_s: float,
    ) -> None:
        self._executor = executor
        self._host, self._port, self._http_path, self._token = host, port, http_path, token
        self._transport = transport
        self._query_timeout_s = query_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._pool_size = size
        self._retry_attempts = retry_attempts
        self._retry_delay_s = retry_delay_s
        self._retry_budget_s = retry_budget_s
        self._max_session_uses = max_uses
        self._max_session_idle_s = max_idle_s
        self._idle: list[Slot] = []
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> list[Any]:
        """Stop pooling; the idle connections, for the caller to close."""
        self._closed = True
        with self._lock:
            idle, self._idle = self._idle, []
        return [s.conn for s in idle]

    def checkout(self) -> tuple[Slot, bool]:
        now = time.monotonic()
        stale: list[Slot] = []
        found: Slot | None = None
        with self._lock:
            while self._idle:
                slot = self._idle.pop()
                if now - slot.last_used > self._max_session_idle_s:
                    stale.append(slot)
                    continue
                found = slot
                break
        for slot in stale:
            self.discard(slot)
        if found is not None:
            return found, True
        return self._open(), False

    def checkin(self, slot: Slot) -> None:
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
            self.discard(slot)

    def drain_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for slot in idle:
            self.discard(slot)

    def discard(self, slot: Slot) -> None:
        """Close a session in the background (against a dead server that takes retries)."""
        self.submit(close_all, [slot.conn])

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            self._executor.submit(fn, *args)
        except RuntimeError:  # the executor is shut down: do it here
            fn(*args)

    def _open(self) -> Slot:
        try:
            conn = dbsql.connect(**self._connect_kwargs())
        except CONNECTOR_ERRORS as exc:
            raise classify(exc, connecting=True) from exc
        self._set_http_timeouts(conn)
        now = time.monotonic()
        return Slot(conn=conn, last_used=now)

    def _connect_kwargs(self) -> dict[str, Any]:
        server_timeout = math.ceil(self._query_timeout_s) + SERVER_TIMEOUT_MARGIN_S
        extra: dict[str, Any] = {}
        if self._transport == "thrift" and self._host.startswith("http://"):
            # a plain-HTTP Thrift endpoint (a local Spark Thrift Server on loopback): the
            # connector would put https:// in front of host:port/path, so give it the URI
            extra["_connection_uri"] = f"{self._host}:{self._port}{self._http_path}"
        return extra | {
            "server_hostname": self._host,
            "http_path": self._http_path,
            "access_token": self._token,
            "_port": self._port,
            "use_sea": self._transport == "sea",
            **({"use_kernel": True} if self._transport == "kernel" else {}),
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


def close_all(conns: list[Any]) -> None:
    for conn in conns:
        try:
            conn.close()
        except CONNECTOR_ERRORS as exc:
            log.debug("databricks: closing a session failed: %r", exc)
