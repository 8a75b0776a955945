"""The FastAPI app: `create_app` only builds it. Routes live in service/routes/, what
they depend on in service/deps.py, the wiring in service/wiring.py."""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graph.observe import GraphObserver
from observability.asgi import RequestTelemetry
from observability.langsmith import langsmith_callbacks
from observability.logs import configure_logging
from observability.metrics import mark_process_dead
from observability.tracing import setup_tracing
from service.changes import change_refresh
from service.middleware import BodyLimit, RequestGuard
from service.problems import install_problem_handlers
from service.resolution import Resolver
from service.routes import api_router
from service.routes.security_docs import install_security_docs
from service.settings import Settings
from service.wiring import open_resources


class BootRefusalAsText:
    """A boot refused for its configuration (`BootError`, which names every problem and
    its fix) is reported by the server (uvicorn logs the lifespan's failure text) as that
    message alone, not as a traceback. Anything else keeps its traceback."""

    MARK = "BootError: "

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def relay(message: Message) -> None:
            text = str(message.get("message") or "")
            if message["type"] == "lifespan.startup.failed" and self.MARK in text:
                message = {**message, "message": text.rsplit(self.MARK, 1)[1].strip()}
            await send(message)

        await self.app(scope, receive, relay)


def freeze_boot_heap() -> int:
    """Once booted: what the boot allocated (modules, the catalog, the compiled graphs,
    sqlglot's and pydantic's tables: some 230,000 objects) is moved out of the cyclic
    collector's reach (`gc.freeze`), after one collection of the boot's garbage. A full
    collection then scans only what requests allocated since, instead of the whole heap
    (about 90 ms here, paid by whichever request triggered it: a latency tail). Returns
    how many objects are frozen; the shutdown unfreezes them."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def create_app(
    settings: Settings | None = None, *, clock: Callable[[], float] = time.time
) -> FastAPI:
    """The service. `clock` is the resolver's wall clock (freshness, TTLs, backoffs): tests
    pass one they move instead of waiting for a TTL to pass."""
    settings = settings or Settings()

    # Telemetry (observability/): tracing is off unless OTEL_EXPORTER_OTLP_ENDPOINT is set.
    tracing = setup_tracing(record_sql=settings.otel_record_sql)
    observer = GraphObserver(tracing=tracing, metrics=settings.metrics_enabled)
    callbacks = langsmith_callbacks()
    run_config = {"callbacks": callbacks} if callbacks else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            async with open_resources(settings, clock=clock) as resources:
                resolver = Resolver(
                    resources.context,
                    observer=observer,
                    config=run_config,
                    refresh_ahead=settings.refresh_ahead,
                    refresh_concurrency=settings.refresh_concurrency,
                    refresh_max_keys=settings.refresh_ahead_max_keys,
                    node_timeouts=resources.node_timeouts(),
                    fast_lane=settings.fast_lane,
                )
                app.state.resources = resources
                app.state.resolver = resolver
                try:
                    async with change_refresh(resources, resolver) as changes:
                        app.state.changes = changes  # service/changes.py (None: off)
                        freeze_boot_heap()
                        yield
                finally:
                    gc.unfreeze()
                    await resolver.aclose()
        finally:
            tracing.shutdown()
            mark_process_dead()

    app = FastAPI(
        title="Widget data resolver",
        version="1.0.0",
        description="Fills dashboard widgets with data: live from PostgreSQL or the Databricks "
        "warehouse, cached, or flagged mock data when live data is unavailable.",
        lifespan=lifespan,
        # no redirect to a Location built from the request's Host: `/x/` is a 404 problem
        redirect_slashes=False,
        # served by service/routes/ops.py behind the same auth rule as data
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    install_problem_handlers(app)
    app.add_middleware(
        BodyLimit, max_bytes=settings.max_body_bytes, timeout_s=settings.http_body_timeout_s
    )
    # before routing and authentication: one credential header each; in dev mode (loopback
    # clients only) loopback Host names only, against DNS rebinding
    app.add_middleware(RequestGuard, loopback_hosts_only=settings.auth_mode == "dev")
    app.include_router(api_router)
    install_security_docs(app)  # the document lists the security schemes (routes/security_docs.py)
    # outermost: RED metrics, X-Request-ID and the request span see every answer (413s too)
    app.add_middleware(RequestTelemetry, tracing=tracing, metrics=settings.metrics_enabled)
    app.add_middleware(BootRefusalAsText)
    app.state.tracing = tracing
    return app


def create_worker_app() -> FastAPI:
    """The app factory of a worker process (`resolver serve` with WORKERS > 1)."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
