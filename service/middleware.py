"""ASGI middleware of the service."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import HTTPException, Request
from starlette.responses import Response
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
                    # a timeout scope, not wait_for (a task per read)
                    async with asyncio.timeout_at(deadline):
                        message = await receive()
                except TimeoutError:
                    raise BodyTimeout(self.timeout_s) from None  # answered as a 408 problem
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)  # answered as a 413 problem
                body_done = not message.get("more_body", False)
            return message

        await self.app(scope, counted, send)


# Host names a browser uses for this machine itself (any port): dev mode's only callers.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})
# headers a request may carry at most once: two credentials (or two Hosts) would leave it
# to the framework to pick one, and a proxy in front might have picked the other
SINGLE_HEADERS = (b"authorization", b"x-api-key", b"host")


def host_name(value: str) -> str:
    """The name in a Host header, without its port: `[::1]:8000` -> `[::1]`."""
    value = value.strip().lower()
    if value.startswith("["):
        return value.split("]", 1)[0] + "]"
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class RequestGuard:
    """Before routing (so before authentication): a request carrying `Authorization`,
    `X-API-Key` or `Host` more than once is a 400 problem; in dev mode (`loopback_hosts_only`)
    a Host that is not a loopback name (localhost, 127.0.0.1, [::1], any port) is a 403
    problem: a DNS-rebinding page in a developer's browser reaches the port under its own
    host name, and must not act as the all-scopes dev principal."""

    def __init__(self, app: ASGIApp, *, loopback_hosts_only: bool) -> None:
        self.app, self.loopback_hosts_only = app, loopback_hosts_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seen: dict[bytes, int] = {}
        host = ""
        for name, value in scope["headers"]:
            if name in SINGLE_HEADERS:
                seen[name] = seen.get(name, 0) + 1
                if name == b"host":
                    host = value.decode("latin-1")
        repeated = [n.decode() for n, count in seen.items() if count > 1]
        if repeated:
            detail = f"the {repeated[0]!r} header may appear only once"
            await _problem(scope, 400, detail)(scope, receive, send)
            return
        if self.loopback_hosts_only and host_name(host) not in LOOPBACK_HOSTS:
            detail = (
                "dev mode answers only requests addressed to a loopback host name "
                "(localhost, 127.0.0.1, [::1]); set AUTH_JWT_SECRET or AUTH_JWKS_URL to serve "
                "other host names"
            )
            response = _problem(scope, 403, detail, type_="urn:problem:host-not-allowed")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _problem(scope: Scope, status: int, detail: str, **kw: Any) -> Response:
    """A problem answered before routing; its `instance` is built without the Host header
    (which is what is being refused, and may not even parse)."""
    headers = [(n, v) for n, v in scope["headers"] if n != b"host"]
    return problem_response(Request({**scope, "headers": headers}), status, detail, **kw)
