"""A local LangSmith API for tests (loopback only): answers `GET /info` and accepts run
ingestion (`POST /runs/multipart`, `POST /runs/batch`, `POST /runs`, `PATCH /runs/{id}`) as the
langsmith client sends it, keeping every request body (zstd or gzip bodies decompressed) so a
test can check what would have left the building.

    with LangSmithApi() as ls:   # LANGSMITH_ENDPOINT=ls.url
        ...
        assert b"secret" not in ls.all_bytes()
"""

from __future__ import annotations

import gzip
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class LangSmithApi:
    host: str = "127.0.0.1"
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        api = self
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    return gzip.decompress(raw)
                if encoding == "zstd":
                    import zstandard

                    return zstandard.ZstdDecompressor().decompressobj().decompress(raw)
                return raw

            def _answer(self, status: int, doc: Any) -> None:
                out = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def _handle(self) -> None:
                body = self._body() if self.command != "GET" else b""
                with api._lock:
                    api.received.append(
                        Received(self.command, self.path, dict(self.headers.items()), body)
                    )
                if self.command == "GET" and self.path.startswith("/info"):
                    self._answer(200, {"version": "0.0.0-fake", "batch_ingest_config": {}})
                else:
                    self._answer(200, {})

            do_GET = do_POST = do_PATCH = do_PUT = _handle

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._server.server_address[1]}"

    def run_posts(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path.startswith("/runs")]

    def all_bytes(self) -> bytes:
        with self._lock:
            return b"\n".join(r.body for r in self.received)

    def __enter__(self) -> LangSmithApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
