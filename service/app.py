"""The FastAPI app: `create_app` only builds it. Routes live in service/routes/, what
they depend on in service/deps.py, the wiring in service/wiring.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service.middleware import BodyLimit
from service.problems import install_problem_handlers
from service.resolution import Resolver
from service.routes import api_router
from service.settings import Settings
from service.wiring import open_resources


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(settings) as resources:
            app.state.resources = resources
            app.state.resolver = Resolver(resources.context)
            yield

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
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.include_router(api_router)
    return app
