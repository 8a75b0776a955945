"""Shared fixtures. Data-layer tests use the real PostgreSQL and Redis on this machine
(TEST_PG_ADMIN_URL / TEST_REDIS_URL override them); each test session gets its own
freshly created database so parallel runs never collide. Helpers: tests/helpers.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.helpers import REDIS_URL, create_database, drop_database


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
