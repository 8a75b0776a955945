"""Request ids and log formatting.

Every request gets an id (the caller's `X-Request-ID` when it is a sane token, else a new
one) held in a context variable for the request's duration, so log lines written anywhere
below it (nodes, adapters) carry it. LOG_FORMAT=json writes one JSON object per line with
`request_id` and `trace_id`; LOG_FORMAT=text (default) the classic format.

Whatever a message holds (a model's string literal, a warehouse's error text, a header),
a log line cannot be forged or leak a credential: both formatters redact credentials in
URLs and `password=`-like pairs (`observability.redact.redact_text`), and the text one
escapes control characters (a newline becomes `\\n`) and marks every line of a traceback
as a continuation (`  | `), so one record is exactly one line plus marked continuations.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

from observability.redact import redact_text
from observability.tracing import current_trace_id

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# C0 and C1 controls, DEL, and the Unicode line and paragraph separators
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    return _ESCAPES.get(char) or (
        f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"
    )


def escape_controls(text: str) -> str:
    """`text` on one line: every control character written as an escape (`\\n`, `\\x1b`)."""
    return _CONTROL_RE.sub(_escape, text)


def safe_message(record: logging.LogRecord) -> str:
    """The record's message with credentials redacted (an unformattable one as its repr)."""
    try:
        message = record.getMessage()
    except Exception:  # a bad %-format must not lose the line
        message = f"{record.msg!r} % {record.args!r}"
    return redact_text(message)


def request_id_from(value: str | bytes | None) -> str:
    """The caller's request id when it is a safe token (1-128 of [A-Za-z0-9._:@/+=-]),
    else a fresh one: a log line never carries a caller's control characters."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if value and _REQUEST_ID_RE.fullmatch(value):
        return value
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    return request_id_var.get()


def _request_id(record: logging.LogRecord) -> str | None:
    """The request the record was written under (kept on the record when its writing was
    deferred), else the current one."""
    rid: str | None = getattr(record, "request_id", None)
    return rid if rid is not None else request_id_var.get()


class DeferredStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler whose records written on an event loop's thread are formatted and
    written at the loop's next turn, all of that turn's lines in one write: a request's
    response goes out before its log line does, and a busy loop pays one write per turn,
    not one per line. Records from other threads, or with no loop running, are written at
    once; `flush` (at shutdown: logging.shutdown) writes whatever is pending."""

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self._pending: list[logging.LogRecord] = []
        self._scheduled = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or loop.is_closed():
            super().emit(record)
            return
        # what the formatters read from the context, kept with the record
        record.request_id = request_id_var.get()
        record.trace_id = current_trace_id()
        with self.lock:  # type: ignore[union-attr]
            self._pending.append(record)
            if self._scheduled:
                return
            self._scheduled = True
        loop.call_soon(self._write_pending)

    def _write_pending(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            records, self._pending, self._scheduled = self._pending, [], False
        if not records:
            return
        lines = []
        for record in records:
            try:
                lines.append(self.format(record) + self.terminator)
            except Exception:
                self.handleError(record)
        try:
            self.stream.write("".join(lines))
            self.stream.flush()
        except Exception:
            self.handleError(records[-1])

    def flush(self) -> None:
        self._write_pending()
        super().flush()


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, msg, request_id, trace_id, and the
    record's `fields` extra (a dict) merged in."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": safe_message(record),
            "request_id": _request_id(record),
            "trace_id": getattr(record, "trace_id", None) or current_trace_id(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info:
            doc["exc"] = redact_text(self.formatException(record.exc_info))
        return orjson.dumps(doc, default=str).decode()


class TextFormatter(logging.Formatter):
    """The classic line, with the request id appended when there is one: the message
    redacted and on one line, a traceback's lines marked as continuations."""

    def format(self, record: logging.LogRecord) -> str:
        safe = logging.makeLogRecord(record.__dict__)  # other handlers see the original
        safe.msg, safe.args = escape_controls(safe_message(record)), None
        safe.exc_info, safe.exc_text, safe.stack_info = None, None, None
        line = super().format(safe)
        rid = _request_id(record)
        if rid:
            line = f"{line} request_id={rid}"
        extra = []
        if record.exc_info:
            extra.append(self.formatException(record.exc_info))
        elif record.exc_text:
            extra.append(record.exc_text)
        if record.stack_info:
            extra.append(self.formatStack(record.stack_info))
        for block in extra:
            for part in redact_text(block).splitlines():
                line += "\n  | " + escape_controls(part)
        return line


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Root logging for the service process (`resolver serve` and friends). Like
    `logging.basicConfig`, it leaves a root logger that is already configured alone (an
    embedding host, a test runner)."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    if root.handlers:
        return
    handler = DeferredStreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(TEXT_FORMAT))
    root.addHandler(handler)
    # uvicorn's own loggers may carry their handlers: route them through ours (redacted,
    # escaped), in both formats
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers = []
        lg.propagate = True
