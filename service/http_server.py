"""The HTTP server's protocol: uvicorn's httptools protocol with a header read timeout.

uvicorn bounds only idle keep-alive connections: a client that sends its request headers
byte by byte (or nothing at all) holds a connection and a file descriptor for as long as
it likes. Here every request's headers must arrive within `header_timeout_s` of the
connection opening (or of the previous response); otherwise the server answers a 408
problem and closes. Request bodies are bounded by `service.middleware.BodyLimit`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.settings import Settings


def _timeout_response() -> bytes:
    body = orjson.dumps(
        {
            "type": "about:blank",
            "title": "Request Timeout",
            "status": 408,
            "detail": "request headers not received in time",
        }
    )
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/problem+json\r\n"
        f"connection: close\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    # from the environment, so `uvicorn --workers` processes importing this class by name
    # get the configured value too; `protocol_with` fixes it for one server.
    header_timeout_s: float = Settings().http_header_timeout_s

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        timer, self._header_timer = getattr(self, "_header_timer", None), None
        if timer is not None:
            timer.cancel()

    def on_headers_complete(self) -> None:
        self._disarm()
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


def protocol_with(header_timeout_s: float) -> type[Any]:
    """The protocol class uvicorn instantiates, with this header timeout."""
    return type(
        "BoundedHttpToolsProtocol",
        (BoundedHttpToolsProtocol,),
        {"header_timeout_s": header_timeout_s},
    )
