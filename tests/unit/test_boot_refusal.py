"""The server reports a configuration refusal (BootError) as its message alone; any other
startup failure keeps its traceback."""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import MutableMapping
from typing import Any

import pytest

from service.app import BootRefusalAsText
from service.wiring import BootError


def failing_lifespan(exc: BaseException) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        try:
            raise exc
        except BaseException:  # what Starlette's router does with a failed startup
            await send({"type": "lifespan.startup.failed", "message": traceback.format_exc()})

    return app


def startup_message(exc: BaseException) -> str:
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    asyncio.run(BootRefusalAsText(failing_lifespan(exc))({"type": "lifespan"}, receive, send))
    (message,) = sent
    return str(message["message"])


def test_a_boot_refusal_is_its_message_alone() -> None:
    text = startup_message(BootError("refusing to start: access policy: x (fix p.yaml)"))
    assert text == "refusing to start: access policy: x (fix p.yaml)"


@pytest.mark.parametrize("exc", [RuntimeError("boom"), ValueError("BootError-like text")])
def test_any_other_failure_keeps_its_traceback(exc: BaseException) -> None:
    text = startup_message(exc)
    assert text.startswith("Traceback") and str(exc) in text
