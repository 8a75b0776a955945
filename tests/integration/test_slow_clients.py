"""Issue 9: slow clients. A client sending its headers or its body byte by byte (or
nothing) no longer holds a connection indefinitely: the real `resolver serve` answers
408 and closes within the configured read timeouts."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.servers import create_database, drop_database, free_port, resolver_serve

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.0
BOUND_S = 10.0  # generous: the assertion is "closed at all", not a timing


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    db = create_database()
    port = free_port()
    work = tmp_path_factory.mktemp("slow")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABRICKS_"))}
    env |= {
        "DATABASE_URL": db,
        "SEED_DEMO": "true",  # a fresh database: the demo widgets
        "PORT": str(port),
        "DATA_DIR": str(work),
        "HTTP_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "HTTP_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
    }
    try:
        with resolver_serve(env, work / "serve.log"):
            yield port
    finally:
        drop_database(db)


def _read_until_closed(sock: socket.socket) -> tuple[bytes, float]:
    started = time.monotonic()
    sock.settimeout(BOUND_S)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    return data, time.monotonic() - started


def test_headers_sent_byte_by_byte_are_cut_off_with_a_408(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server)) as sock:
        sent = b""
        request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 100
        started = time.monotonic()
        for byte in request:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += bytes([byte])
            time.sleep(0.05)
            if time.monotonic() - started > BOUND_S:
                break
        data, _ = _read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 408"), data[:200]
    assert len(sent) < len(request)  # cut off before the client finished dribbling


def test_many_silent_connections_are_all_closed(server: int) -> None:
    socks = [socket.create_connection(("127.0.0.1", server)) for _ in range(50)]
    try:
        closed = 0
        for sock in socks:
            _, elapsed = _read_until_closed(sock)
            closed += elapsed < BOUND_S
        assert closed == len(socks)
    finally:
        for sock in socks:
            sock.close()
    assert httpx.get(f"http://127.0.0.1:{server}/healthz", timeout=5).status_code == 200


def test_a_body_sent_byte_by_byte_is_a_408_problem(server: int) -> None:
    body = b'{"widget_ids": ["open-issues-kpi"]}'
    head = (
        f"POST /v1/widgets/data HTTP/1.1\r\nHost: localhost\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server)) as sock:
        sock.sendall(head)
        started = time.monotonic()
        for byte in body:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.2)
            if time.monotonic() - started > BOUND_S:
                break
        data, _ = _read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 408"), data[:300]
    assert b"application/problem+json" in data


def test_a_normal_client_is_unaffected(server: int) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{server}") as client:
        for _ in range(3):  # keep-alive: the next request's headers are bounded too
            assert (
                client.post(
                    "/v1/widgets/data", json={"widget_ids": ["open-issues-kpi"]}
                ).status_code
                == 200
            )
