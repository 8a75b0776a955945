"""A local Databricks SQL Statement Execution API server for tests (stdlib + DuckDB, loopback).

It speaks enough of the Statement Execution API (`/api/2.0/sql/...`) for the real
`databricks-sql-connector` with `use_sea=True, use_cloud_fetch=False`:

    POST   /api/2.0/sql/sessions                          -> {"session_id"}
    DELETE /api/2.0/sql/sessions/{id}
    POST   /api/2.0/sql/statements                        -> statement response
    GET    /api/2.0/sql/statements/{id}                   -> statement response
    POST   /api/2.0/sql/statements/{id}/cancel
    DELETE /api/2.0/sql/statements/{id}
    GET    /api/2.0/sql/statements/{id}/result/chunks/{n} -> one INLINE chunk

Results are INLINE `JSON_ARRAY` (every value a string, NULL as null) with a manifest
schema in the SEA type vocabulary (`LONG`, `DECIMAL` + precision/scale, `DATE`,
`TIMESTAMP`, ...). Statements run on DuckDB after `sqlglot.transpile(sql,
read="databricks", write="duckdb")`; a DuckDB error becomes a FAILED statement with
the error message, as a real warehouse reports a SQL error.

    with FakeSeaServer(con, token="dapi-test") as srv:
        wh = DatabricksWarehouse(server_hostname=srv.server_hostname, port=srv.port,
                                 http_path=srv.http_path, access_token="dapi-test",
                                 transport="sea")
        ...
        srv.statements[-1].statement     # the SQL the warehouse received

Scripted failures (plain attributes, change them at any time):
    srv.http_status = 503             every request answered with that HTTP status
    srv.fail_message = "..."          every statement ends FAILED with this message
    srv.statement_delay_s = 3.0       statements stay PENDING/RUNNING that long
    srv.probe_delay_s = 0.1           the same for DESCRIBE HISTORY probes (default 0)
A wrong bearer token is answered with HTTP 401.

Delta table versions: `DESCRIBE HISTORY <table> [LIMIT n]` is answered with Delta-shaped
rows (version, timestamp, operation, ...), newest first; every table starts at version 0
and `srv.append(table, rows)` inserts rows and moves its version by one (a WRITE).
`srv.data_statements` are the statements that were not such probes.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import duckdb
import sqlglot
import sqlglot.errors

API = "/api/2.0/sql"
DEFAULT_TOKEN = "dapi-fake-token-for-tests"
DEFAULT_WAREHOUSE_ID = "f4ke0wareh0use01"

_SESSION_RE = re.compile(rf"^{API}/sessions/([^/]+)$")
_STATEMENT_RE = re.compile(rf"^{API}/statements/([^/]+)$")
_CANCEL_RE = re.compile(rf"^{API}/statements/([^/]+)/cancel$")
_CHUNK_RE = re.compile(rf"^{API}/statements/([^/]+)/result/chunks/(\d+)$")


from fakes.delta_history import DeltaHistory, insert_rows, is_history_probe  # noqa: E402
from fakes.sea_wire import (  # noqa: E402
    RecordedRequest,
    Session,
    Statement,
    _duck_error,
    _seconds,
    sea_column,
    sea_value,
)

# ------------------------------------------------------------------ server


class FakeSeaServer:
    """A threaded Statement Execution API server on 127.0.0.1 backed by DuckDB."""

    def __init__(
        self,
        db: duckdb.DuckDBPyConnection | Callable[[], duckdb.DuckDBPyConnection],
        *,
        token: str = DEFAULT_TOKEN,
        warehouse_id: str = DEFAULT_WAREHOUSE_ID,
        port: int = 0,
        max_wait_s: float = 0.5,
    ) -> None:
        """`max_wait_s` caps how long POST /statements holds for the client's
        `wait_timeout` ("10s" from the connector) before answering RUNNING."""
        self._db = db
        self.token = token
        self.warehouse_id = warehouse_id
        self.max_wait_s = max_wait_s
        self._requested_port = port
        # scripted failures
        self.http_status: int | None = None
        self.fail_message: str | None = None
        self.fail_error_code: str = "BAD_REQUEST"
        self.statement_delay_s: float = 0.0
        self.probe_delay_s: float = 0.0  # DESCRIBE HISTORY (metadata) is not held
        # records
        self.requests: list[RecordedRequest] = []
        self.sessions: dict[str, Session] = {}
        self.statements: list[Statement] = []
        self.canceled: list[str] = []
        self._by_id: dict[str, Statement] = {}
        self._lock = threading.Lock()
        self._db_lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.history = DeltaHistory()  # Delta versions per table (fakes/delta_history.py)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> FakeSeaServer:
        handler = _handler_for(self)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self._requested_port), handler)
        self._httpd.daemon_threads = True
        self._requested_port = self.port  # a restart comes back on the same port
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-databricks-sea",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeSeaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is not None:
            return int(self._httpd.server_address[1])
        return self._requested_port

    @property
    def server_hostname(self) -> str:
        return "http://127.0.0.1"

    @property
    def http_path(self) -> str:
        return f"/sql/1.0/warehouses/{self.warehouse_id}"

    def reset_failures(self) -> None:
        self.http_status = None
        self.fail_message = None
        self.statement_delay_s = 0.0

    @property
    def statement_texts(self) -> list[str]:
        return [s.statement for s in self.statements]

    @property
    def data_statements(self) -> list[str]:
        """The statements that read data (not `DESCRIBE HISTORY` version probes)."""
        return [t for t in self.statement_texts if not is_history_probe(t)]

    # ---------------------------------------------------------------- Delta versions

    def table_version(self, table: str) -> int:
        return self.history.version(table)

    def append(self, table: str, rows: list[dict[str, Any]]) -> int:
        """Insert `rows` (column -> value) into `table` and move its version (a Delta
        WRITE); returns the new version."""
        with self._db_lock:
            db = self._db() if callable(self._db) else self._db
            insert_rows(db, table, rows)
        return self.history.write(table, len(rows))

    # ---------------------------------------------------------------- dispatch

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        record = RecordedRequest(
            method, path, headers.get("authorization"), headers.get("user-agent"), body
        )
        with self._lock:
            self.requests.append(record)
        status, payload = self._route(method, path, headers, body)
        record.status = status
        return status, payload

    def _route(
        self, method: str, path: str, headers: dict[str, str], body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        if self.http_status is not None:
            return self.http_status, _error("TEMPORARILY_UNAVAILABLE", "scripted HTTP failure")
        if headers.get("authorization") != f"Bearer {self.token}":
            return 401, _error("UNAUTHENTICATED", "Invalid access token.")
        if method == "POST" and path == f"{API}/sessions":
            return self._create_session(body)
        if method == "POST" and path == f"{API}/statements":
            return self._execute(body)
        if (m := _SESSION_RE.match(path)) and method == "DELETE":
            return self._delete_session(m.group(1))
        if (m := _CANCEL_RE.match(path)) and method == "POST":
            return self._cancel(m.group(1))
        if (m := _CHUNK_RE.match(path)) and method == "GET":
            return self._chunk(m.group(1), int(m.group(2)))
        if m := _STATEMENT_RE.match(path):
            if method == "GET":
                return self._get(m.group(1))
            if method == "DELETE":
                return self._close(m.group(1))
        return 404, _error("ENDPOINT_NOT_FOUND", f"No API found for '{method} {path}'")

    def _create_session(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if body.get("warehouse_id") != self.warehouse_id:
            return 404, _error("RESOURCE_DOES_NOT_EXIST", "SQL warehouse does not exist.")
        session = Session(
            session_id=str(uuid.uuid4()),
            warehouse_id=self.warehouse_id,
            session_confs=dict(body.get("session_confs") or {}),
            catalog=body.get("catalog"),
            schema=body.get("schema"),
        )
        with self._lock:
            self.sessions[session.session_id] = session
        return 200, {"session_id": session.session_id}

    def _delete_session(self, session_id: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            session = self.sessions.get(session_id)
            if session is None or not session.open:
                return 404, _error("NOT_FOUND", f"Session {session_id} does not exist.")
            session.open = False
        return 200, {}

    def _execute(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        session = self.sessions.get(str(body.get("session_id")))
        if session is None or not session.open:
            return 404, _error("NOT_FOUND", "Session does not exist or has been closed.")
        if body.get("warehouse_id") != self.warehouse_id:
            return 404, _error("RESOURCE_DOES_NOT_EXIST", "SQL warehouse does not exist.")
        if body.get("disposition") != "INLINE" or body.get("format") != "JSON_ARRAY":
            return 400, _error(
                "INVALID_PARAMETER_VALUE", "this fake serves only INLINE JSON_ARRAY results"
            )
        stmt = Statement(
            statement_id=str(uuid.uuid4()),
            session_id=session.session_id,
            statement=str(body.get("statement", "")),
            request=body,
            ready_at=time.monotonic()
            + (
                self.probe_delay_s
                if is_history_probe(str(body.get("statement", "")))
                else self.statement_delay_s
            ),
        )
        self._run(stmt, body.get("row_limit"))
        with self._lock:
            self.statements.append(stmt)
            self._by_id[stmt.statement_id] = stmt
        hold = min(_seconds(body.get("wait_timeout")), self.max_wait_s)
        remaining = stmt.ready_at - time.monotonic()
        if remaining > 0 and hold > 0:
            stmt.canceled.wait(min(hold, remaining))
        return 200, self._response(stmt)

    def _run(self, stmt: Statement, row_limit: Any) -> None:
        if self.fail_message is not None:
            stmt.error = {"error_code": self.fail_error_code, "message": self.fail_message}
            return
        history = self.history.answer(stmt.statement)
        if history is not None:
            stmt.columns, stmt.data = history
            return
        try:
            statements = sqlglot.transpile(stmt.statement, read="databricks", write="duckdb")
        except sqlglot.errors.SqlglotError as exc:
            stmt.error = {"error_code": "BAD_REQUEST", "message": f"[PARSE_SYNTAX_ERROR] {exc}"}
            stmt.sql_state = "42601"
            return
        if len(statements) != 1:
            stmt.error = {"error_code": "BAD_REQUEST", "message": "expected exactly one statement"}
            return
        stmt.transpiled = statements[0]
        try:
            with self._db_lock:
                db = self._db() if callable(self._db) else self._db
                cur = db.cursor()
            try:
                cur.execute(stmt.transpiled)
                description = cur.description or []
                limit = int(row_limit) if row_limit else None
                rows = cur.fetchmany(limit + 1) if limit else cur.fetchall()
            finally:
                cur.close()
        except duckdb.Error as exc:
            condition, sql_state = _duck_error(exc)
            stmt.error = {"error_code": "BAD_REQUEST", "message": f"[{condition}] {exc}"}
            stmt.sql_state = sql_state
            return
        if limit is not None and len(rows) > limit:
            rows, stmt.truncated = rows[:limit], True
        stmt.columns = [sea_column(d[0], str(d[1]), i) for i, d in enumerate(description)]
        stmt.data = [[sea_value(v) for v in row] for row in rows]

    def _get(self, statement_id: str) -> tuple[int, dict[str, Any]]:
        stmt = self._by_id.get(statement_id)
        if stmt is None:
            return 404, _error("NOT_FOUND", f"Statement {statement_id} not found.")
        return 200, self._response(stmt)

    def _cancel(self, statement_id: str) -> tuple[int, dict[str, Any]]:
        stmt = self._by_id.get(statement_id)
        if stmt is None:
            return 404, _error("NOT_FOUND", f"Statement {statement_id} not found.")
        if stmt.state(time.monotonic()) in ("PENDING", "RUNNING"):
            stmt.canceled.set()
        with self._lock:
            self.canceled.append(statement_id)
        return 200, {}

    def _close(self, statement_id: str) -> tuple[int, dict[str, Any]]:
        stmt = self._by_id.get(statement_id)
        if stmt is None:
            return 404, _error("NOT_FOUND", f"Statement {statement_id} not found.")
        stmt.closed = True
        return 200, {}

    def _chunk(self, statement_id: str, index: int) -> tuple[int, dict[str, Any]]:
        stmt = self._by_id.get(statement_id)
        if stmt is None or index != 0 or stmt.state(time.monotonic()) != "SUCCEEDED":
            return 404, _error("NOT_FOUND", f"No chunk {index} for statement {statement_id}.")
        return 200, _result(stmt)

    def _response(self, stmt: Statement) -> dict[str, Any]:
        state = stmt.state(time.monotonic())
        status: dict[str, Any] = {"state": state}
        payload: dict[str, Any] = {"statement_id": stmt.statement_id, "status": status}
        if state == "FAILED" and stmt.error is not None:
            status["error"] = stmt.error
            if stmt.sql_state:
                status["sql_state"] = stmt.sql_state
        if state == "SUCCEEDED":
            payload["manifest"] = {
                "format": "JSON_ARRAY",
                "schema": {"column_count": len(stmt.columns), "columns": stmt.columns},
                "total_chunk_count": 1,
                "chunks": [{"chunk_index": 0, "row_offset": 0, "row_count": len(stmt.data)}],
                "total_row_count": len(stmt.data),
                "truncated": stmt.truncated,
            }
            payload["result"] = _result(stmt)
        return payload


def _result(stmt: Statement) -> dict[str, Any]:
    return {
        "chunk_index": 0,
        "row_offset": 0,
        "row_count": len(stmt.data),
        "data_array": stmt.data,
    }


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error_code": code, "message": message}


def _handler_for(fake: FakeSeaServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per TCP connection: stop() is clean

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else {}
            except json.JSONDecodeError:
                self._send(400, _error("MALFORMED_REQUEST", "request body is not JSON"))
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload = fake.handle(self.command, self.path, headers, body)
            self._send(status, payload)

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler
