"""The parts every instance shares through Redis when REDIS_URL is set (in-process
otherwise): the result cache, with near copies of answers kept honest by Redis' key
tracking (adapters/near_cache.py), and the leases per cache key (adapters/lease)."""

from __future__ import annotations

from adapters.cache import MemoryTTLCache, RedisCache
from adapters.lease import LocalLeases, RedisLeases
from adapters.near_cache import NearCache
from domain.keys import ANSWER_KEY_PREFIX
from service.settings import Settings


def open_cache(settings: Settings) -> MemoryTTLCache | RedisCache | NearCache:
    if settings.redis_url:
        redis = RedisCache(
            settings.redis_url,
            prefix=settings.cache_prefix,
            socket_timeout_s=settings.cache_socket_timeout_s,
        )
        if not settings.cache_near:
            return redis
        return NearCache(
            redis,
            settings.redis_url,
            prefix=settings.cache_prefix,
            near_prefix=ANSWER_KEY_PREFIX,
            max_age_s=settings.cache_near_max_age_s,
            max_bytes=settings.cache_near_max_mb * 1024 * 1024,
        )
    return MemoryTTLCache()


def open_leases(settings: Settings) -> LocalLeases | RedisLeases:
    """Leases per cache key: on Redis (shared by every instance) when REDIS_URL is set."""
    ttl = settings.effective_lease_ttl_s
    if settings.redis_url:
        return RedisLeases(
            settings.redis_url,
            prefix=settings.cache_prefix,
            ttl_s=ttl,
            heartbeat_s=settings.lease_heartbeat_s,
            # the cache's Redis timeout, at least the leases' own default (0.25 s)
            socket_timeout_s=max(0.25, settings.cache_socket_timeout_s),
        )
    return LocalLeases(ttl_s=ttl)
