"""Request ids and log formatting.

Every request gets an id (the caller's `X-Request-ID` when it is a sane token, else a new
one) held in a context variable for the request's duration, so log lines written anywhere
below it (nodes, adapters) carry it. LOG_FORMAT=json writes one JSON object per line with
`request_id` and `trace_id`; LOG_FORMAT=text (default) the classic format.
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

from observability.tracing import current_trace_id

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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
            "msg": record.getMessage(),
            "request_id": request_id_var.get(),
            "trace_id": current_trace_id(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


class _TextFormatter(logging.Formatter):
    """The classic line, with the request id appended when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = request_id_var.get()
        return f"{line} request_id={rid}" if rid else line


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Root logging for the service process (`resolver serve` and friends). Like
    `logging.basicConfig`, it leaves a root logger that is already configured alone (an
    embedding host, a test runner)."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else _TextFormatter(TEXT_FORMAT))
    root.addHandler(handler)
    if fmt == "json":  # uvicorn's own loggers carry their handlers: route them through ours
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            lg = logging.getLogger(name)
            lg.handlers = []
            lg.propagate = True
