"""The service's Prometheus metric families (prometheus-client), all prefixed `wdr_`.

Labels stay bounded: route templates (never raw paths), methods, status classes, node names,
backends, `source` (a backend or a failure kind), outcomes, cache results, failure kinds,
safety rule ids. Never a widget id, user, tenant or SQL text.

Several worker processes on one host: set PROMETHEUS_MULTIPROC_DIR to an empty directory
before the first worker starts (`resolver serve` does it for WORKERS > 1). prometheus-client
then keeps each process's values in mmap files there, and `render()` sums them all, so any
worker answering `GET /metrics` reports the whole host. The variable must be set before this
module is imported (prometheus-client picks its value class at import time).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

PREFIX = "wdr"

# 0.5 ms .. 120 s: a cache hit is sub-millisecond, a warehouse query can take a minute.
NODE_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)
HTTP_BUCKETS = NODE_BUCKETS
LLM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)

# The resolution outcomes (`outcome` label of wdr_resolutions_total).
OUTCOMES = ("live", "cached", "stale", "mock", "dry_run")
CACHE_RESULTS = ("hit", "miss", "stale", "error")
LEASE_FOLLOWER_RESULTS = ("served", "failure", "timeout")

HTTP_REQUESTS = Counter(
    f"{PREFIX}_http_requests",
    "HTTP requests by route template, method and status class.",
    ("route", "method", "status_class"),
)
HTTP_DURATION = Histogram(
    f"{PREFIX}_http_request_duration_seconds",
    "HTTP request duration (until the response is complete) by route template and method.",
    ("route", "method"),
    buckets=HTTP_BUCKETS,
)
HTTP_IN_PROGRESS = Gauge(
    f"{PREFIX}_http_requests_in_progress",
    "HTTP requests being served.",
    multiprocess_mode="livesum",
)
RESOLUTIONS = Counter(
    f"{PREFIX}_resolutions",
    "Widget resolutions by backend, source (the backend or the failure kind) and outcome "
    "(live, cached, stale, mock, dry_run). Requests that shared a resolution in flight count "
    "once here; see wdr_singleflight_followers_total.",
    ("backend", "source", "outcome"),
)
NODE_DURATION = Histogram(
    f"{PREFIX}_node_duration_seconds",
    "Time spent in each graph node, per node that ran.",
    ("node",),
    buckets=NODE_BUCKETS,
)
NODE_OUTCOMES = Counter(
    f"{PREFIX}_node_outcomes",
    "Graph node runs by node and outcome (the trace's outcome).",
    ("node", "outcome"),
)
CACHE_LOOKUPS = Counter(
    f"{PREFIX}_cache_lookups",
    "Result-cache lookups by result (hit, miss, stale, error). Refresh and dry runs skip the "
    "lookup and are not counted.",
    ("result",),
)
CACHE_NEAR_READS = Counter(
    f"{PREFIX}_cache_near_reads",
    "Reads of resolved-answer entries with near copies on (REDIS_URL, CACHE_NEAR): answered "
    "from this process's copy (near) or by a Redis round trip (redis).",
    ("source",),
)
CACHE_NEAR_INVALIDATIONS = Counter(
    f"{PREFIX}_cache_near_invalidations",
    "Keys Redis named as changed (client-side caching invalidation messages) to this process.",
)
SINGLEFLIGHT_FOLLOWERS = Counter(
    f"{PREFIX}_singleflight_followers",
    "Requests that joined an identical resolution already in flight in this process.",
)
LEASE_FOLLOWERS = Counter(
    f"{PREFIX}_lease_followers",
    "Requests that found another instance holding the Redis lease for their resolution and "
    "waited for its outcome: served (the leader's answer arrived), failure (the leader "
    "failed and that failure was shared) or timeout.",
    ("result",),
)
BACKEND_DURATION = Histogram(
    f"{PREFIX}_backend_statement_duration_seconds",
    "Backend statement duration by backend (postgres, duckdb, databricks).",
    ("backend",),
    buckets=NODE_BUCKETS,
)
BACKEND_ERRORS = Counter(
    f"{PREFIX}_backend_statement_errors",
    "Backend statements that failed, by backend and failure kind.",
    ("backend", "kind"),
)
SAFETY_REJECTIONS = Counter(
    f"{PREFIX}_safety_rejections",
    "SQL refused by the safety layer, by rule.",
    ("rule",),
)
LLM_REQUESTS = Counter(
    f"{PREFIX}_llm_requests",
    "Requests to the LLM by outcome (ok or the failure kind).",
    ("outcome",),
)
LLM_DURATION = Histogram(
    f"{PREFIX}_llm_request_duration_seconds",
    "LLM request latency.",
    buckets=LLM_BUCKETS,
)
LLM_TOKENS = Counter(
    f"{PREFIX}_llm_tokens",
    "LLM tokens by direction (input, output).",
    ("direction",),
)


_CHILDREN: dict[tuple[int, tuple[str, ...]], Any] = {}


def child(family: Any, *labels: str) -> Any:
    """`family.labels(*labels)`, looked up once per label set (a hot path records a few per
    request; `labels()` takes a lock and checks its arguments every time). The families are
    this module's constants and their label values are bounded (see above)."""
    key = (id(family), labels)
    bound = _CHILDREN.get(key)
    if bound is None:
        bound = _CHILDREN[key] = family.labels(*labels)
    return bound


def record_stale(backend: str, source: str) -> None:
    """A stale answer was served (the freshness work calls this, or records `stale` itself)."""
    RESOLUTIONS.labels(backend, source, "stale").inc()


def record_lease_follower(result: str) -> None:
    """`result`: served, failure or timeout (LEASE_FOLLOWER_RESULTS). cache_lookup's
    outcomes `shared` / `shared_failure` are counted by the node hook already."""
    LEASE_FOLLOWERS.labels(result).inc()


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def registry() -> CollectorRegistry:
    """What `GET /metrics` exposes: this process's registry, or in multiprocess mode a fresh
    registry that sums every worker's files (prometheus-client's documented pattern)."""
    path = multiprocess_dir()
    if path is None:
        return REGISTRY
    from prometheus_client import multiprocess

    reg = CollectorRegistry()
    multiprocess.MultiProcessCollector(reg, path=path)
    return reg


# what `later` holds until the event loop's next turn, and the loop that turn belongs to
_pending: list[tuple[Callable[..., None], tuple[Any, ...]]] = []
_flush_on: asyncio.AbstractEventLoop | None = None


def later(record: Callable[..., None], *args: Any) -> None:
    """Call `record(*args)` at the running event loop's next turn, with whatever else was
    recorded in this one: a request's per-node metrics are recorded after its response is
    written, not on its way (each Histogram.observe and Counter.inc takes a lock). With no
    running loop, now. `render` (GET /metrics) and `flush` record what is pending first."""
    global _flush_on
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        record(*args)
        return
    _pending.append((record, args))
    if _flush_on is not loop:  # (a flush scheduled on a loop since closed never ran)
        _flush_on = loop
        loop.call_soon(flush)


def flush() -> None:
    """Record everything `later` holds, now."""
    global _flush_on
    _flush_on = None
    while _pending:
        batch = _pending[:]
        del _pending[:]
        for record, args in batch:
            record(*args)


def render() -> tuple[bytes, str]:
    """The Prometheus text exposition and its content type (what is pending recorded first)."""
    flush()
    return generate_latest(registry()), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int | None = None) -> None:
    """In multiprocess mode, drop a finished worker's live gauges (call on shutdown)."""
    if multiprocess_dir() is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid or os.getpid())


def family_names(reg: CollectorRegistry | None = None) -> set[str]:
    """Every sample name the service exports (counters as `_total`, histograms as
    `_bucket`/`_sum`/`_count`), for the test that checks deploy/ dashboards and alerts."""
    names: set[str] = set()
    for fam in (reg or REGISTRY).collect():
        names.add(fam.name)
        if fam.type == "counter":
            names |= {fam.name + "_total", fam.name + "_created"}
        elif fam.type == "histogram":
            names |= {fam.name + s for s in ("_bucket", "_sum", "_count", "_created")}
    return {n for n in names if n.startswith(PREFIX + "_")}


# Known label values start at zero, so rate() and ratios work before the first event.
for _result in CACHE_RESULTS:
    CACHE_LOOKUPS.labels(_result)
for _result in LEASE_FOLLOWER_RESULTS:
    LEASE_FOLLOWERS.labels(_result)
for _direction in ("input", "output"):
    LLM_TOKENS.labels(_direction)
