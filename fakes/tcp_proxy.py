"""A TCP proxy for tests: put it between a client and PostgreSQL, then cut the line.

    proxy = TcpProxy("127.0.0.1", 5432)
    proxy.start()                 # listens on 127.0.0.1:<proxy.port>
    ...                           # point the client at proxy.url_for(pg_url)
    proxy.stop()                  # closes the listener AND every live connection
    proxy.start()                 # listens again on the same port
    proxy.close()                 # stop and end the proxy's thread
    proxy.latency_s = 0.2         # delay every chunk relayed, both ways (a slow link)
    proxy.blackhole = True        # a silent link: bytes are swallowed, nothing answers,
                                  # no reset or close (new connections are accepted, too)

It runs its own event loop in a daemon thread. `start()` and `stop()` do their work at
once (blocking for a few milliseconds) and return an already-finished awaitable, so both
`proxy.stop()` (sync tests) and `await proxy.stop()` (async tests) work.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Generator
from types import TracebackType
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Done(Generic[T]):
    """An awaitable that is already finished: `await Done(x)` is `x`."""

    def __init__(self, value: T) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, T]:
        return self.value
        yield  # makes __await__ a generator


class TcpProxy:
    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.listen_host = listen_host
        self._port = listen_port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tcp-proxy", daemon=True
        )
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.latency_s = 0.0  # added before relaying each chunk, both ways (a slow link)
        self.blackhole = False  # swallow every byte, both ways, without closing anything

    # ---------------------------------------------------------------- public, blocking

    @property
    def port(self) -> int:
        """The listening port (fixed after the first start, reused by later starts)."""
        return self._port

    @property
    def running(self) -> bool:
        return self._server is not None

    def url_for(self, pg_url: str) -> str:
        """`pg_url` (postgresql://user@host:port/db) rewritten to go through the proxy."""
        scheme, _, rest = pg_url.partition("://")
        userinfo, _, hostpath = rest.rpartition("@")
        _, _, path = hostpath.partition("/")
        prefix = f"{userinfo}@" if userinfo else ""
        return f"{scheme}://{prefix}{self.listen_host}:{self._port}/{path}"

    def start(self) -> Done[int]:
        """Listen (again, on the same port once known). Returns the port, awaitable or not."""
        self._call(self._start())
        return Done(self._port)

    def stop(self) -> Done[None]:
        """Close the listener and every live connection."""
        self._call(self._stop())
        return Done(None)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> TcpProxy:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---------------------------------------------------------------- loop side

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _start(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._handle, self.listen_host, self._port, reuse_address=True
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            transport = writer.transport
            if not transport.is_closing():
                transport.abort()  # reset at once: the client sees the connection die
        self._writers.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self.blackhole:  # accepted, then silence: nothing is connected upstream
            self._writers.add(client_w)
            task = asyncio.create_task(self._swallow(client_r))
            self._tasks.add(task)
            try:
                await task
            finally:
                self._tasks.discard(task)
                self._writers.discard(client_w)
                client_w.transport.abort()
            return
        try:
            upstream_r, upstream_w = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            client_w.transport.abort()
            return
        self._writers.update((client_w, upstream_w))
        pumps = [
            asyncio.create_task(self._pump(client_r, upstream_w)),
            asyncio.create_task(self._pump(upstream_r, client_w)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
                self._tasks.discard(task)
            for w in (client_w, upstream_w):
                self._writers.discard(w)
                w.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                if self.blackhole:
                    continue  # swallowed
                if self.latency_s > 0:
                    await asyncio.sleep(self.latency_s)
                writer.write(data)
                await writer.drain()

    async def _swallow(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while await reader.read(65536):
                pass
