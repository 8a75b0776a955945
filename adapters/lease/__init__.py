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

`lease_scope()`: the service runs every resolution inside one; a lease acquired inside it
and not released when it ends (an exception, a cancellation) is released there with the
outcome `abandoned`, so followers take over at once instead of waiting for it to expire.
"""

from adapters.lease.base import LocalLeases, lease_scope
from adapters.lease.redis_leases import RedisLeases

__all__ = ["LocalLeases", "RedisLeases", "lease_scope"]
