"""Per-tenant LLM budget (`limits`): a moving window on Redis when REDIS_URL is set, so
every instance shares one budget per tenant, else in process memory.

A limiter that cannot be reached allows the generation (with a WARNING): the budget is a
cost guard, not a security boundary, and a Redis blip must not stop question widgets.
"""

from __future__ import annotations

import logging
import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

log = logging.getLogger(__name__)


class TenantLlmBudget:
    """graph.context.LlmBudget."""

    def __init__(self, limit: str, *, redis_url: str | None = None, prefix: str = "wdr:") -> None:
        self.limit = limit
        self._item: RateLimitItem = parse(limit)
        self._storage: Storage
        if redis_url:
            uri = "async+" + redis_url if not redis_url.startswith("async+") else redis_url
            self._storage = storage_from_string(  # type: ignore[assignment]
                uri,
                implementation="redispy",
                key_prefix=f"{prefix}llm-budget",
                socket_timeout=0.25,
                socket_connect_timeout=0.25,
            )
        else:
            self._storage = MemoryStorage()
        self._limiter = MovingWindowRateLimiter(self._storage)

    def describe(self) -> str:
        return f"{self.limit} per tenant ({'redis' if not isinstance(self._storage, MemoryStorage) else 'memory'})"

    async def take(self, tenant: str) -> float | None:
        try:
            if await self._limiter.hit(self._item, "tenant", tenant):
                return None
            return await self.retry_after(tenant)
        except Exception as exc:  # the storage's client errors vary by backend: allow, loudly
            log.warning("LLM budget unavailable (allowing): %s: %s", type(exc).__name__, exc)
            return None

    async def retry_after(self, tenant: str) -> float:
        """Seconds until the tenant's window frees a generation (at least 1)."""
        try:
            stats = await self._limiter.get_window_stats(self._item, "tenant", tenant)
        except Exception:  # see take()
            return 1.0
        return max(1.0, stats.reset_time - time.time())

    async def reset(self, tenant: str) -> None:
        await self._limiter.clear(self._item, "tenant", tenant)
