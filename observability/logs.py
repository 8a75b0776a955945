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


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, msg, request_id, trace_id, and the
    record's `fields` extra (a dict) merged in."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": safe_message(record),
            "request_id": request_id_var.get(),
            "trace_id": current_trace_id(),
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
        rid = request_id_var.get()
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
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(TEXT_FORMAT))
    root.addHandler(handler)
    # uvicorn's own loggers may carry their handlers: route them through ours (redacted,
    # escaped), in both formats
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers = []
        lg.propagate = True
