"""Leases, the part shared by both implementations: `lead_or_follow` over acquire/wait,
`lease_scope()`, and the in-process `LocalLeases` (see adapters/lease/__init__.py)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from domain.lease import ABANDONED, BUSY, GONE, Outcome, Role, Waited

log = logging.getLogger(__name__)


@dataclass
class _Held:
    leases: _LeasesBase
    key: str
    token: str


_SCOPE: contextvars.ContextVar[list[_Held] | None] = contextvars.ContextVar(
    "lease_scope", default=None
)


@contextlib.asynccontextmanager
async def lease_scope() -> AsyncIterator[None]:
    """Release, with outcome `abandoned`, every lease taken inside and still held at exit."""
    held: list[_Held] = []
    reset = _SCOPE.set(held)
    try:
        yield
    finally:
        _SCOPE.reset(reset)
        for h in list(held):
            outcome = Outcome(ok=False, kind=ABANDONED, detail="the leading resolution ended early")
            with contextlib.suppress(Exception):
                await asyncio.shield(h.leases.release(h.key, h.token, outcome))


class _LeasesBase:
    """`lead_or_follow` on top of acquire / wait, and the scope bookkeeping."""

    async def acquire(self, key: str) -> str | None:
        raise NotImplementedError

    async def release(self, key: str, token: str, outcome: Outcome) -> bool:
        raise NotImplementedError

    async def wait(self, key: str, timeout_s: float) -> Waited:
        raise NotImplementedError

    def _track(self, key: str, token: str) -> None:
        held = _SCOPE.get()
        if held is not None:
            held.append(_Held(self, key, token))

    @staticmethod
    def _untrack(key: str, token: str) -> None:
        held = _SCOPE.get()
        if held is not None:
            held[:] = [h for h in held if not (h.key == key and h.token == token)]

    async def lead_or_follow(self, key: str, *, wait_s: float, follow: bool = True) -> Role:
        t0 = time.monotonic()
        deadline = t0 + wait_s
        takeover = False
        while True:
            token = await self.acquire(key)
            if token is not None:
                return Role(token=token, takeover=takeover, waited_s=time.monotonic() - t0)
            if not follow:
                return Role(followed=BUSY)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning("lease %s: no outcome within %.1fs; resolving without it", key, wait_s)
                return Role(token=None, waited_s=time.monotonic() - t0)
            waited = await self.wait(key, remaining)
            if waited.how == "done" and waited.outcome is not None:
                if waited.outcome.kind == ABANDONED:
                    takeover = True
                    continue
                return Role(followed=waited.outcome, waited_s=time.monotonic() - t0)
            if waited.how == "gone":  # released (message not seen) or expired: re-read first
                return Role(followed=GONE, waited_s=time.monotonic() - t0)
            takeover = takeover or waited.how == "vanished"  # timeout: the deadline decides


# ------------------------------------------------------------------ in-process


class LocalLeases(_LeasesBase):
    """Leases inside one process. A lease left held expires after `ttl_s`."""

    def __init__(self, *, ttl_s: float = 60.0) -> None:
        self._ttl_s = ttl_s
        self._held: dict[str, tuple[str, float, asyncio.Future[Outcome]]] = {}

    def describe(self) -> str:
        return "in-process"

    async def acquire(self, key: str) -> str | None:
        current = self._held.get(key)
        now = time.monotonic()
        if current is not None and current[1] > now:
            return None
        if current is not None:  # expired: wake its followers, who then retry
            self._resolve(current[2], Outcome(ok=False, kind=ABANDONED, detail="lease expired"))
        token = uuid.uuid4().hex
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._held[key] = (token, now + self._ttl_s, future)
        self._track(key, token)
        return token

    async def release(self, key: str, token: str, outcome: Outcome) -> bool:
        self._untrack(key, token)
        current = self._held.get(key)
        if current is None or current[0] != token:
            return False
        del self._held[key]
        self._resolve(current[2], outcome)
        return True

    async def wait(self, key: str, timeout_s: float) -> Waited:
        current = self._held.get(key)
        if current is None:
            return Waited("gone")
        expires_in = current[1] - time.monotonic()
        try:
            outcome = await asyncio.wait_for(
                asyncio.shield(current[2]), max(0.0, min(timeout_s, expires_in))
            )
        except TimeoutError:
            return Waited("vanished" if expires_in <= timeout_s else "timeout")
        return Waited("done", outcome)

    @staticmethod
    def _resolve(future: asyncio.Future[Outcome], outcome: Outcome) -> None:
        if not future.done():
            future.set_result(outcome)

    def held(self, key: str) -> bool:
        current = self._held.get(key)
        return current is not None and current[1] > time.monotonic()

    async def aclose(self) -> None:
        for _, _, fut in self._held.values():
            self._resolve(fut, Outcome(ok=False, kind=ABANDONED, detail="shutting down"))
        self._held.clear()
