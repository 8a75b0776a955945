"""Shared fixtures. Data-layer tests use the real PostgreSQL and Redis on this machine
(TEST_PG_ADMIN_URL / TEST_REDIS_URL override them); each test session gets its own
freshly created database so parallel runs never collide. Helpers: tests/support/."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from fakes.bedrock_converse import ConverseServer
from fakes.databricks_sea import FakeSeaServer
from tests.support.servers import (
    PG_ADMIN_URL,
    REDIS_URL,
    Service,
    converse_with_fake_aws,
    create_database,
    drop_database,
    running_service,
    sea_lakehouse,
    service_settings,
)
from tests.support.spark import spark_session, write_lakehouse_parquet

# The suite chooses its own auth settings (dev mode unless a test sets a secret): a
# developer's exported AUTH_* variables must not switch every test to another mode.
for _name in [n for n in os.environ if n.startswith("AUTH_")]:
    del os.environ[_name]


# Suites of pure code (no server needed); every other test needs PostgreSQL and Redis.
PURE_SUITES = ("unit", "nodes")


def _unreachable() -> list[str]:
    """The test servers that do not answer, each with why."""
    import psycopg
    import redis

    problems = []
    try:
        psycopg.connect(PG_ADMIN_URL, connect_timeout=3).close()
    except Exception as exc:
        problems.append(f"PostgreSQL at {PG_ADMIN_URL}: {str(exc).strip().splitlines()[0]}")
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3, socket_timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        problems.append(f"Redis at {REDIS_URL}: {exc}")
    return problems


def pytest_collection_finish(session: pytest.Session) -> None:
    """Fail once, before any test, when the servers the suite needs are not there (instead
    of a `Connection refused` per test)."""
    tests_dir = Path(__file__).parent
    needs_servers = any(
        Path(str(item.path)).resolve().relative_to(tests_dir).parts[0] not in PURE_SUITES
        for item in session.items
        if Path(str(item.path)).resolve().is_relative_to(tests_dir)
    )
    problems = _unreachable() if needs_servers else []
    if problems:
        pytest.exit(
            "the test suite needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth) "
            'and Redis on 127.0.0.1:6379 (README, "Two commands"); override them with '
            "TEST_PG_ADMIN_URL and TEST_REDIS_URL. Not reachable:\n  - " + "\n  - ".join(problems),
            returncode=3,
        )


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


@pytest.fixture(scope="module")
def db_url() -> Iterator[str]:
    """An empty database for one test module (a module whose tests need a database of their
    own each defines its own `db_url`)."""
    url = create_database()
    yield url
    drop_database(url)


@pytest.fixture(scope="module")
def converse() -> Iterator[ConverseServer]:
    """The local Converse API server (Bedrock at the wire) for one test module, with dummy
    AWS credentials set while it runs; tests script its replies and `reset()` it."""
    with converse_with_fake_aws() as srv:
        yield srv


@pytest.fixture(scope="module")
def sea() -> Iterator[FakeSeaServer]:
    """The local Statement Execution API server (Databricks at the wire) over a fresh demo
    lakehouse, for one test module (point a service at it with `sea_settings(sea)`)."""
    with sea_lakehouse() as srv:
        yield srv


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def svc(
    request: pytest.FixtureRequest, db_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Service]:
    """The service of one test module, in-process over the module's database and the real
    Redis (tests.support.servers.service_settings). What a module varies it declares once:
    `pytestmark = [pytest.mark.service(**settings)]`, with `converse=True` for Bedrock
    behind the module's `converse` server. A module that needs more (a clock, a config
    directory) defines its own `svc` from service_settings."""
    marker = request.node.get_closest_marker("service")
    overrides = dict(marker.kwargs) if marker else {}
    if overrides.pop("converse", False):
        overrides["converse"] = request.getfixturevalue("converse")
    settings = service_settings(db_url, tmp_path_factory.mktemp("data"), **overrides)
    async with running_service(**settings) as service:
        yield service


@pytest.fixture
def embedded_tmp() -> Iterator[Path]:
    """A fresh directory for an embedded PostgreSQL. Not under pytest's tmp_path: pgserver
    runs initdb as its own user and opens the parent folders to it, and a concurrent pytest
    session resets /tmp/pytest-of-<user> to 0700 at startup."""
    path = Path(tempfile.mkdtemp(prefix="wdr-embedded-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture
def cache_namespace() -> str:
    """A unique key prefix so tests sharing the Redis server never see each other's keys."""
    return f"wdr-test:{uuid.uuid4().hex[:8]}:"


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One local Spark session for every Spark suite (tests.support.spark.spark_session): the
    demo lakehouse for SPARK_NOW as temp views. Skips without a Java runtime or pyspark."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("no Java runtime for Spark")
    pytest.importorskip("pyspark.sql")
    parquet = write_lakehouse_parquet(tmp_path_factory.mktemp("lakehouse"))
    with spark_session(parquet, tmp_path_factory.mktemp("spark")) as session:
        yield session
