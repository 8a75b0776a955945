"""Real servers for tests: PostgreSQL databases, free ports, the service in-process (ASGI)
or on a loopback HTTP server, `resolver serve` as a process, and the wire fakes (the
Statement Execution API, the Converse API) started over their demo data."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx
import psycopg
from fastapi import FastAPI

from adapters.lakehouse import build_lakehouse
from service.app import create_app
from service.schemas import ResolveResponse
from service.settings import REPO_ROOT, Settings
from service.wiring import Resources

CONFIG_DIR = REPO_ROOT / "config"
PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# The services' Redis socket timeout in tests: a loaded machine's slow Redis call must not
# become a cache miss (the default 0.1 s does, and trips the breaker); Redis down is still
# refused at once.
SLOW_REDIS_OK_S = 5.0
BIN_DIR = Path(sys.executable).parent  # the running interpreter's scripts (resolver, langgraph)


def entry_point(name: str) -> str:
    """An installed console script of the interpreter running the tests."""
    path = BIN_DIR / name
    found = str(path) if path.exists() else shutil.which(name)
    assert found, f"console script {name!r} is not installed next to {sys.executable}"
    return found


# ---------------------------------------------------------------- real servers


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


def free_port() -> int:
    """A loopback port with nothing listening on it (for servers, or a closed port)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------- the service in-process

# The answer's fields, taken from the response model (the one definition), without the
# optional `trace`.
RESPONSE_FIELDS = frozenset(
    f.alias or name for name, f in ResolveResponse.model_fields.items() if name != "trace"
)


@dataclass
class Service:
    app: FastAPI
    client: httpx.AsyncClient
    settings: Settings

    @property
    def res(self) -> Resources:
        resources: Resources = self.app.state.resources
        return resources

    async def data(
        self,
        widget_id: str,
        *,
        trace: bool = False,
        headers: dict[str, str] | None = None,
        **body: Any,
    ) -> httpx.Response:
        """POST /v1/widgets/{id}/data; a 200 body is checked against ResolveResponse."""
        params = {"trace": "true"} if trace else None
        r = await self.client.post(
            f"/v1/widgets/{widget_id}/data", json=body or None, params=params, headers=headers
        )
        if r.status_code == 200:
            assert set(r.json()) == RESPONSE_FIELDS | ({"trace"} if trace else set()), r.text
            ResolveResponse.model_validate(r.json())
        return r


@contextmanager
def sea_lakehouse(token: str = "dapi-test") -> Iterator[Any]:
    """The local Statement Execution API server (fakes.databricks_sea) over a fresh demo
    lakehouse in DuckDB, accepting `token`."""
    from fakes.databricks_sea import FakeSeaServer

    con = duckdb.connect()
    build_lakehouse(con, now=datetime.now(UTC))
    with FakeSeaServer(con, token=token) as srv:
        yield srv


def sea_settings(sea: Any) -> dict[str, Any]:
    """The settings (running_service keywords) that point a service at the local Statement
    Execution API server `sea` (the `sea` transport: the connector's client for it)."""
    return {
        "databricks_host": f"{sea.server_hostname}:{sea.port}",
        "databricks_transport": "sea",
        "databricks_http_path": sea.http_path,
        "databricks_token": sea.token,
    }


@contextmanager
def resolver_serve(
    env: Mapping[str, str], log_path: Path, *, cwd: Path | None = None, timeout_s: float = 120
) -> Iterator[subprocess.Popen[bytes]]:
    """`resolver serve` as a process with exactly `env` (its `PORT` included), its output in
    `log_path`; yields once /healthz answers (an AssertionError with the log's tail if it
    exits or does not come up in `timeout_s`), and is stopped on the way out (SIGTERM, then
    SIGKILL after 30 s)."""
    base = f"http://127.0.0.1:{env['PORT']}"

    def tail() -> str:
        return log_path.read_text(errors="replace")[-4000:]

    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [entry_point("resolver"), "serve"],
            cwd=cwd,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                assert proc.poll() is None, f"resolver serve exited ({proc.returncode}):\n{tail()}"
                assert time.monotonic() < deadline, f"resolver serve did not come up:\n{tail()}"
                try:
                    if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.25)
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def copy_config(tmp: Path) -> Path:
    dst = tmp / "config"
    shutil.copytree(CONFIG_DIR, dst)
    return dst


def service_settings(
    db_url: str, data_dir: Path, *, converse: Any = None, **overrides: Any
) -> dict[str, Any]:
    """The running_service keywords of the suite's usual service: over the real PostgreSQL
    database `db_url` and the real Redis (under a key prefix of its own), its data in
    `data_dir`. With `converse` (the local Converse API server, the `converse` fixture) the
    model is Bedrock's behind that server, answering within 2 s unless `overrides` say
    otherwise. `overrides`: any other setting (what a test module varies)."""
    settings: dict[str, Any] = {
        "database_url": db_url,
        "redis_url": REDIS_URL,
        "cache_prefix": f"wdr-test:{uuid.uuid4().hex[:8]}:",
        "data_dir": data_dir,
    }
    if converse is not None:
        from fakes.bedrock_converse import MODEL_ID

        settings |= {
            "bedrock_model_id": MODEL_ID,
            "bedrock_endpoint_url": converse.url,
            "bedrock_timeout_s": 2.0,
        }
    return settings | overrides


@asynccontextmanager
async def running_service(
    *, client_host: str = "127.0.0.1", clock: Callable[[], float] | None = None, **overrides: Any
) -> AsyncIterator[Service]:
    """The service over real PostgreSQL/Redis, called from `client_host` (loopback by
    default: dev mode's dev principal). Forced refreshes are not debounced unless a test
    sets `refresh_min_interval_s`; the database is seeded at boot unless it sets
    `seed_demo`. `clock` (a FakeClock) replaces the resolver's wall clock."""
    overrides.setdefault("refresh_min_interval_s", 0)
    overrides.setdefault("cache_socket_timeout_s", SLOW_REDIS_OK_S)
    overrides.setdefault("seed_demo", True)  # fresh databases: the demo widgets (SEED_DEMO)
    settings = Settings(**overrides)
    app = create_app(settings, clock=clock or time.time)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(client_host, 50123))
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://127.0.0.1:8000",  # dev mode: a loopback Host
        ) as client:
            yield Service(app=app, client=client, settings=settings)


@dataclass
class Served:
    """The service on a real loopback HTTP server (uvicorn, in this event loop)."""

    app: Any
    url: str
    settings: Settings


@asynccontextmanager
async def served(**overrides: Any) -> AsyncIterator[Served]:
    """The service over real PostgreSQL/Redis behind uvicorn on a free loopback port: for
    what the in-memory ASGI transport cannot carry (a stream that stays open); seeded at boot
    unless `seed_demo` is given, as running_service."""
    import uvicorn

    overrides.setdefault("refresh_min_interval_s", 0)
    overrides.setdefault("cache_socket_timeout_s", SLOW_REDIS_OK_S)
    overrides.setdefault("seed_demo", True)  # fresh databases: the demo widgets (SEED_DEMO)
    settings = Settings(**overrides)
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 120
    while not server.started:  # a condition, not a timing: the lifespan boots the service
        assert not task.done(), "the server stopped while starting"
        assert time.monotonic() < deadline, "the server did not start"
        await asyncio.sleep(0.05)
    try:
        yield Served(app=app, url=f"http://127.0.0.1:{port}", settings=settings)
    finally:
        server.should_exit = True
        await task


# dummy AWS credentials for the local Converse API server (botocore signs every request), in
# this process (converse_with_fake_aws) or in a `resolver serve` subprocess's environment
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIDTESTFAKE00000000",
    "AWS_SECRET_ACCESS_KEY": "fake-secret",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """`env` set in this process's environment for the block; the caller's values (or
    their absence) restored after."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def converse_with_fake_aws(**server: Any) -> Iterator[Any]:
    """The local Converse API server (`server`: its keyword arguments), with dummy AWS
    credentials set for its lifetime (and the caller's environment restored after)."""
    from fakes.bedrock_converse import ConverseServer

    with environment(FAKE_AWS_ENV), ConverseServer(**server) as srv:
        yield srv


def redis_client_of(cache: Any) -> Any:
    """The Redis client under a service's cache (with near copies or without)."""
    return getattr(cache, "redis", cache)._client


async def settled(cache: Any) -> None:
    """Every change made to Redis so far (by a test's own client too) is seen by the
    cache's near copies (adapters/near_cache.py::NearCache.sync); a no-op without them."""
    sync = getattr(cache, "sync", None)
    if sync is not None:
        assert await sync()
