"""Start the real service (lifespan and all) in-process over real PostgreSQL and Redis."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from service.app import create_app
from service.resources import Resources
from service.settings import REPO_ROOT, Settings


@dataclass
class Service:
    app: FastAPI
    client: httpx.AsyncClient
    settings: Settings

    @property
    def res(self) -> Resources:
        resources: Resources = self.app.state.resources
        return resources

    async def data(self, widget_id: str, *, trace: bool = False, **body: Any) -> httpx.Response:
        params = {"trace": "true"} if trace else None
        return await self.client.post(
            f"/v1/widgets/{widget_id}/data", json=body or None, params=params
        )


def copy_config(tmp: Path) -> Path:
    dst = tmp / "config"
    shutil.copytree(REPO_ROOT / "config", dst)
    return dst


@asynccontextmanager
async def running_service(**overrides: Any) -> AsyncIterator[Service]:
    settings = Settings(**overrides)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://resolver.test"
        ) as client:
            yield Service(app=app, client=client, settings=settings)
