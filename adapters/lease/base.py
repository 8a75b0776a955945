"""Leases, the part shared by both implementations: `lead_or_follow` over acquire/wait,
the `lead()` scope, and the in-process `LocalLeases` (see adapters/lease/__init__.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator

from domain.lease import ABANDONED, BUSY, GONE, Lead, Outcome, Role, Waited

log = logging.getLogger(__name__)


class _LeasesBase:
    """`lead_or_follow` and the `lead()` scope on top of acquire / release / wait."""

    async def acquire(self, key: str) -> str | None:
        raise NotImplementedError

    async def release(self, key: str, token: str, outcome: Outcome) -> bool:
        raise NotImplementedError

    async def wait(self, key: str, timeout_s: float) -> Waited:
        raise NotImplementedError

    @contextlib.asynccontextmanager
    async def lead(self, key: str, *, wait_s: float, follow: bool = True) -> AsyncIterator[Lead]:
        """Leadership of `key` as one scope (domain/lease.py): the lease is taken on entry
        and released on exit, with the outcome the leader settled, or `abandoned` when the
        body raised, timed out or was cancelled (followers then take over at once)."""
        role = await self.lead_or_follow(key, wait_s=wait_s, follow=follow)
        lead = Lead(
            leads=role.leads,
            followed=role.followed,
            takeover=role.takeover,
            held=role.token is not None,
        )
        if role.token is None:
            yield lead
            return
        try:
            yield lead
        finally:
            outcome = lead.outcome or Outcome(
                ok=False, kind=ABANDONED, detail="the leading resolution ended early"
            )
            with contextlib.suppress(Exception):
                await asyncio.shield(self.release(key, role.token, outcome))

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
        self._waiters: dict[str, int] = {}

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
        return token

    async def release(self, key: str, token: str, outcome: Outcome) -> bool:
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
        self._waiters[key] = self._waiters.get(key, 0) + 1
        try:
            outcome = await asyncio.wait_for(
                asyncio.shield(current[2]), max(0.0, min(timeout_s, expires_in))
            )
        except TimeoutError:
            return Waited("vanished" if expires_in <= timeout_s else "timeout")
        finally:
            self._waiters[key] -= 1
        return Waited("done", outcome)

    @staticmethod
    def _resolve(future: asyncio.Future[Outcome], outcome: Outcome) -> None:
        if not future.done():
            future.set_result(outcome)

    def waiting(self, key: str) -> int:
        """How many followers wait for the key's outcome now (tests wait on it)."""
        return self._waiters.get(key, 0)

    def held(self, key: str) -> bool:
        current = self._held.get(key)
        return current is not None and current[1] > time.monotonic()

    async def aclose(self) -> None:
        for _, _, fut in self._held.values():
            self._resolve(fut, Outcome(ok=False, kind=ABANDONED, detail="shutting down"))
        self._held.clear()
