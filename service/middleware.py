"""ASGI middleware of the service."""

from __future__ import annotations

import asyncio

from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.problems import problem_response


class BodyTooLarge(HTTPException):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body over {max_bytes} bytes")


class BodyTimeout(HTTPException):
    def __init__(self, timeout_s: float) -> None:
        super().__init__(
            408,
            f"request body not received within {timeout_s:g}s",
            headers={"Connection": "close"},
        )


class BodyLimit:
    """Refuse a request body over `max_bytes` with a 413 problem: at once when the declared
    Content-Length says so, else while reading (chunked bodies are counted as they arrive).
    A body that does not arrive in full within `timeout_s` (a client sending it byte by
    byte) is a 408 problem, and the connection is closed."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout_s: float | None = None) -> None:
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                response = problem_response(
                    Request(scope),
                    413,
                    f"request body over {self.max_bytes} bytes",
                    title="Content Too Large",
                )
                await response(scope, receive, send)
                return
        received = 0
        deadline: float | None = None
        body_done = False

        async def counted() -> Message:
            nonlocal received, deadline, body_done
            if body_done or self.timeout_s is None:  # e.g. waiting for a disconnect
                message = await receive()
            else:
                loop = asyncio.get_running_loop()
                deadline = deadline if deadline is not None else loop.time() + self.timeout_s
                try:
                    message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
                except TimeoutError:
                    raise BodyTimeout(self.timeout_s) from None  # answered as a 408 problem
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)  # answered as a 413 problem
                body_done = not message.get("more_body", False)
            return message

        await self.app(scope, counted, send)
