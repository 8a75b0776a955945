"""The HTTP server's protocol: uvicorn's httptools protocol with bounded request heads.

uvicorn bounds only idle keep-alive connections, and httptools buffers a request's head
without limit: a client that sends its headers byte by byte (or nothing at all) holds a
connection and a file descriptor for as long as it likes, and one that sends a 64 MB header
holds 64 MB of memory before any authentication. Here, before the app (and so before any
authentication) sees a request:

- its headers must arrive within `header_timeout_s` of the connection opening (or of the
  previous response), else a 408 problem and the connection is closed;
- its head (request line and headers) may hold at most `max_header_bytes` bytes and
  `max_headers` header fields, else a 431 problem and the connection is closed. The bytes
  of a head still arriving are counted as they come, so an endless header is refused after
  at most one more read, never buffered whole.

Request bodies are bounded by `service.middleware.BodyLimit`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from httptools import HttpParserError
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.settings import Settings


def _problem_response(status: int, reason: str, detail: str) -> bytes:
    body = orjson.dumps(
        {"type": "about:blank", "title": reason, "status": status, "detail": detail}
    )
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/problem+json\r\n"
        f"connection: close\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _timeout_response() -> bytes:
    return _problem_response(408, "Request Timeout", "request headers not received in time")


class HeadTooLarge(HttpParserError):
    """Raised from a parser callback to stop parsing an oversized head (httptools wraps it
    in an HttpParserError, which uvicorn answers through `send_400_response`)."""


_SETTINGS = Settings()


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    # from the environment, so `uvicorn --workers` processes importing this class by name
    # get the configured values too; `protocol_with` fixes them for one server.
    header_timeout_s: float = _SETTINGS.http_header_timeout_s
    max_header_bytes: int = _SETTINGS.http_max_header_bytes
    max_headers: int = _SETTINGS.http_max_headers

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        self._in_head = True  # the next bytes belong to a request line or headers
        self._head_bytes = 0
        self._head_fields = 0
        self._parsed_bytes = 0
        self._head_refusal: str | None = None
        super().connection_made(transport)
        self._arm()

    # -------------------------------------------------------------- head size and count

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # a head still unfinished past the limit is refused now: never buffered whole
        over = self._in_head and self._head_bytes > self.max_header_bytes
        if over and not self.transport.is_closing():
            self._refuse_head(f"request headers over {self.max_header_bytes} bytes")

    def on_message_begin(self) -> None:
        self._in_head, self._head_bytes, self._head_fields, self._parsed_bytes = True, 0, 0, 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_fields += 1
        if self._head_fields > self.max_headers:
            self._head_refusal = f"more than {self.max_headers} request header fields"
            raise HeadTooLarge(self._head_refusal)
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count(self, n: int) -> None:
        # the parsed size: a whole head can arrive in one read that also holds a body
        self._parsed_bytes += n
        if self._parsed_bytes > self.max_header_bytes:
            self._head_refusal = f"request headers over {self.max_header_bytes} bytes"
            raise HeadTooLarge(self._head_refusal)

    def send_400_response(self, msg: str) -> None:
        if self._head_refusal is not None:  # our own refusal, raised from a callback
            self._refuse_head(self._head_refusal)
            return
        super().send_400_response(msg)

    def _refuse_head(self, detail: str) -> None:
        self._disarm()
        self.transport.write(_problem_response(431, "Request Header Fields Too Large", detail))
        self.transport.close()

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        timer, self._header_timer = getattr(self, "_header_timer", None), None
        if timer is not None:
            timer.cancel()

    def on_headers_complete(self) -> None:
        self._disarm()
        self._in_head = False
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request's headers are bounded too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered: its body is the middleware's business
        self.transport.write(_timeout_response())
        self.transport.close()


def protocol_with(
    header_timeout_s: float, *, max_header_bytes: int | None = None, max_headers: int | None = None
) -> type[Any]:
    """The protocol class uvicorn instantiates, with this header timeout and head limits."""
    return type(
        "BoundedHttpToolsProtocol",
        (BoundedHttpToolsProtocol,),
        {
            "header_timeout_s": header_timeout_s,
            "max_header_bytes": max_header_bytes or BoundedHttpToolsProtocol.max_header_bytes,
            "max_headers": max_headers or BoundedHttpToolsProtocol.max_headers,
        },
    )
