"""Shared fixtures. Data-layer tests use the real PostgreSQL and Redis on this machine
(TEST_PG_ADMIN_URL / TEST_REDIS_URL override them); each test session gets its own
freshly created database so parallel runs never collide."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _with_db(url: str, dbname: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{dbname}"


def create_database(prefix: str = "wdr_test") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return _with_db(PG_ADMIN_URL, name)


def drop_database(url: str) -> None:
    name = url.rpartition("/")[2]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """An empty database on the real PostgreSQL server, dropped at session end."""
    url = create_database()
    yield url
    drop_database(url)


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """An empty database for one test."""
    url = create_database()
    yield url
    drop_database(url)


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture
def cache_namespace() -> str:
    """A unique key prefix so tests sharing the Redis server never see each other's keys."""
    return f"wdr-test:{uuid.uuid4().hex[:8]}:"


def free_port() -> int:
    """A loopback port with nothing listening on it (for servers, or a closed port)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port
