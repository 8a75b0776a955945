"""Leases per cache key (domain.lease.Leases): Redis across instances, or in-process.

`RedisLeases` (REDIS_URL set):
- acquire: `SET lease token PX ttl` plus a heartbeat key `hb` (`PX hb_ttl`), both in one
  Lua script that refuses while the lease exists *and* its heartbeat is alive. A leader
  whose process died stops beating, so a follower takes its lease over within `hb_ttl`
  (the lease itself lives longer than the backend's timeout, so a slow but live leader
  never loses it);
- the leader beats every `heartbeat_s` (token-checked) while it holds the lease;
- release: compare-and-delete in Lua (only the token that holds the lease deletes it),
  which also PUBLISHes the outcome in the same atomic step;
- followers listen on one pattern-free channel per prefix (one subscription per process,
  opened at the first wait) and check the lease between short polls, so a lost message
  or a dead pub/sub connection costs at most one poll interval.
When Redis is unreachable, leases fall back to the in-process ones (a WARN, a short
circuit breaker), so one instance still runs one query per key.

`LocalLeases`: the same contract inside one process (asyncio futures), used without Redis.

`lead(key, wait_s=...)`: leadership as one scope, `async with leases.lead(key, ...) as lead`
around the work it protects (graph/runner.py); the lease is released when the scope ends,
with the outcome the leader settled, or `abandoned` when the work raised, timed out or was
cancelled, so followers take over at once instead of waiting for it to expire.
"""

from adapters.lease.base import LocalLeases
from adapters.lease.redis_leases import RedisLeases

__all__ = ["LocalLeases", "RedisLeases"]
