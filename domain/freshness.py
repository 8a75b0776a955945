"""How fresh a cached answer is: one entry serves fresh, stale-while-revalidate and
stale-if-error answers (the windows of RFC 5861, counted from the end of the TTL).

    resolved_at ── ttl ──> expires ── swr ──> (stale answers end) ... ── sie ──> (last good ends)

- fresh: served as is;
- stale (within `swr` past the TTL): served at once, flagged `stale` (`revalidating`), and
  one background refresh starts;
- last good (within `sie` past the TTL, beyond `swr`): served only when the backend fails
  (or failed a moment ago), flagged with the failure kind; otherwise the viewer waits for
  a live answer;
- expired: never served; the entry is gone from the cache once both windows are over.

A failed refresh never touches the entry. It writes a separate failure note (kind,
detail, when to retry) next to it, so every instance answers from the last good entry at
once and only retries the backend after `retry_at`, instead of every viewer waiting on a
backend that is down.

Pure: no framework imports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from domain.models import RoutingEntry

ENTRY_FORMAT = 2


@dataclass(frozen=True, slots=True)
class Policy:
    ttl_s: float
    swr_s: float
    sie_s: float

    @classmethod
    def of(cls, routing: RoutingEntry) -> Policy:
        return cls(routing.ttl_seconds, routing.swr_seconds, routing.stale_if_error_seconds)

    @property
    def retention_s(self) -> int:
        """How long the cache keeps an entry: its TTL and the longer of its stale windows."""
        return int(self.ttl_s + max(self.swr_s, self.sie_s))


def answering(asked: RoutingEntry, answered_by: RoutingEntry) -> RoutingEntry:
    """The routing an answer is kept and served under when a question asked under `asked`
    (the question widget's) is answered by a metric routed `answered_by` (its backend): the
    stricter of the two freshness policies, window by window, so that a metric whose old
    numbers mislead (`stale_if_error_seconds: 0`) never stands in stale because a question
    reached it."""
    swr = min(asked.swr_seconds, answered_by.swr_seconds)
    return answered_by.model_copy(
        update={
            "ttl_seconds": min(asked.ttl_seconds, answered_by.ttl_seconds),
            "stale_while_revalidate_seconds": swr,
            "stale_if_error_seconds": min(
                asked.stale_if_error_seconds, answered_by.stale_if_error_seconds
            ),
            "generator": asked.generator,
        }
    )


class Age(StrEnum):
    fresh = "fresh"
    stale = "stale"
    last_good = "last_good"
    expired = "expired"


def make_entry(
    *,
    rows: list[dict[str, Any]],
    schema: list[dict[str, str]],
    generated_sql: str | None,
    truncated: bool,
    resolved_at: float,
    policy: Policy,
) -> dict[str, Any]:
    return {
        "v": ENTRY_FORMAT,
        "rows": rows,
        "schema": schema,
        "generated_sql": generated_sql,
        "truncated": truncated,
        "resolved_at": resolved_at,
        "ttl_s": policy.ttl_s,
        "swr_s": policy.swr_s,
        "sie_s": policy.sie_s,
    }


def entry_policy(entry: Mapping[str, Any], fallback: Policy) -> Policy:
    """The windows the entry was written with (an older entry has the current policy's)."""
    try:
        return Policy(float(entry["ttl_s"]), float(entry["swr_s"]), float(entry["sie_s"]))
    except (KeyError, TypeError, ValueError):
        return fallback


def expires_at(entry: Mapping[str, Any], fallback: Policy) -> float:
    return float(entry["resolved_at"]) + entry_policy(entry, fallback).ttl_s


def age_of(entry: Mapping[str, Any], now: float, fallback: Policy) -> Age:
    policy = entry_policy(entry, fallback)
    past_ttl = now - float(entry["resolved_at"]) - policy.ttl_s
    if past_ttl < 0:
        return Age.fresh
    if past_ttl < policy.swr_s:
        return Age.stale
    if past_ttl < policy.sie_s:
        return Age.last_good
    return Age.expired


def usable_as_last_good(entry: Mapping[str, Any] | None, now: float, fallback: Policy) -> bool:
    """A failing backend may be answered with this entry (fresh, or within stale-if-error)."""
    if entry is None:
        return False
    policy = entry_policy(entry, fallback)
    return now - float(entry["resolved_at"]) < policy.ttl_s + policy.sie_s


# ------------------------------------------------------------------ failure notes


def failure_note_key(cache_key: str) -> str:
    return cache_key + "#failed"


def failure_note(*, kind: str, detail: str, now: float, backoff_s: float) -> dict[str, Any]:
    return {"kind": kind, "detail": detail, "at": now, "retry_at": now + backoff_s}


def may_retry(note: Mapping[str, Any] | None, now: float) -> bool:
    """No failure noted, or its backoff is over."""
    return note is None or now >= float(note.get("retry_at", 0.0))


# ------------------------------------------------------------------ the answer's hint


@dataclass(frozen=True, slots=True)
class Freshness:
    """What degrade_or_return tells the service about an answer over a cache key (its
    background refreshes: service/refresh.py)."""

    key: str  # the cache key
    expires_at: float | None  # when the answer shown expires (None: it showed no real data)
    ttl_s: float  # the key's TTL
    revalidate: bool  # refresh it in the background now (stale answer, backoff over)
    live: bool  # the answer was resolved live by a backend (this run or its lease leader)
    hit: bool  # the answer was read from the cache
    skipped: bool  # a background refresh that had nothing to do
    # the sources' data versions the answer was read at (domain/data_versions.py)
    versions: Mapping[str, int] | None = None


# ------------------------------------------------------------------ the read that decides


@dataclass(frozen=True, slots=True)
class Probe:
    """One read of a key's cache entry (and of its failure note when the entry is not
    fresh), taken once to decide and handed on: the decision and the answer it gives use
    the same read (graph/runner.py reads it, cache_lookup answers from it)."""

    entry: dict[str, Any] | None  # the entry as read; None when absent or malformed
    note: dict[str, Any] | None  # the failure note beside it (read only when it matters)
    at: float  # the clock when read
