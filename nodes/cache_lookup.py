"""cache_lookup: answer from the cache when the entry allows it, else lead the backend
query for this key or share the answer of the resolution already leading it.

- fresh entry: a hit;
- stale entry (within stale-while-revalidate): answered at once, flagged `stale`
  (`revalidating`), and the service starts one background refresh (`revalidate`);
- a refresh failed a moment ago (a failure note next to the entry): the last good entry
  (within stale-if-error) is answered at once with that failure, and the backend is only
  tried again in the background once the note's backoff is over;
- otherwise the backend is needed: under the key's lease (`ctx.leases`) one resolution
  across all instances runs it; the others wait for its outcome and re-read the cache, or
  take its failure (and then answer from the last good entry or the mock).
A background refresh (`background`) never waits: it skips when another resolution holds
the lease, when the entry has more than `ahead_s` left, or while a failure's backoff runs.
`refresh=true` skips the fresh read (a last good entry may still stand in for a failure),
except within `refresh_min_interval_s` of the entry's live resolution, when it is answered
from that resolution (`refresh=true` cannot hammer a backend); dry runs bypass the cache.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from domain.data_versions import gated_age, refresh_needed
from domain.freshness import (
    Age,
    Policy,
    failure_note_key,
    may_retry,
    usable_as_last_good,
)
from domain.lease import Outcome
from graph.context import Context
from graph.state import State
from nodes._common import traced

_LEAD_ATTEMPTS = 3


def _valid(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    ok = entry is not None and isinstance(entry.get("rows"), list) and "resolved_at" in entry
    return entry if ok else None


def _served(entry: dict[str, Any], outcome: str) -> dict[str, Any]:
    return {
        "cache_hit": True,
        "rows": entry["rows"],
        "schema": entry.get("schema", []),
        "generated_sql": entry.get("generated_sql"),
        "resolved_at": entry["resolved_at"],
        "truncated": entry.get("truncated", False),
        "rollup": entry.get("rollup"),
        "executed": True,
        "outcome": outcome,
        "data_versions": entry.get("versions"),
    }


def _failure(note: dict[str, Any], node: str = "cache_lookup") -> dict[str, Any]:
    return {"kind": str(note.get("kind")), "detail": str(note.get("detail")), "node": node}


@traced("cache_lookup")
async def cache_probe(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """cache_lookup where it only reads: the same update as cache_lookup when a foreground
    read is answered from the entry (fresh, stale, or last good beside a failure note),
    else `{"cache_hit": False, "outcome": "probe_miss"}` having taken nothing (no lease).
    The resolver's fast lane (graph/fastlane.py) runs it."""
    ctx = runtime.context
    if not (state.get("dry_run") or state.get("background") or state.get("refresh")):
        key = state["cache_key"]
        policy = Policy.of(state["routing"])
        now = ctx.clock()
        entry = _valid(await ctx.cache.get(key))
        if entry is not None:
            answer = await _from_entry(ctx, key, entry, now, policy, refresh=False)
            if answer is not None:
                return answer
    return {"cache_hit": False, "outcome": "probe_miss"}


@traced("cache_lookup")
async def cache_lookup(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = runtime.context
    if state.get("dry_run"):
        return {"cache_hit": False, "outcome": "bypass_dry_run"}
    key = state["cache_key"]
    policy = Policy.of(state["routing"])
    now = ctx.clock()
    entry = _valid(await ctx.cache.get(key))
    last_good = entry if usable_as_last_good(entry, now, policy) else None
    if state.get("background"):
        return await _background(state, ctx, key, policy, entry, last_good)
    if entry is not None:
        answer = await _from_entry(ctx, key, entry, now, policy, refresh=bool(state.get("refresh")))
        if answer is not None:
            return answer
    return await _lead_or_share(state, ctx, key, policy, last_good)


async def _from_entry(
    ctx: Context,
    key: str,
    entry: dict[str, Any],
    now: float,
    policy: Policy,
    *,
    refresh: bool,
) -> dict[str, Any] | None:
    """The answer a foreground read takes from the entry without the backend, or None."""
    if (
        refresh
        and ctx.refresh_min_interval_s > 0
        and now - float(entry["resolved_at"]) < ctx.refresh_min_interval_s
    ):
        return _served(entry, "refresh_debounced")
    if refresh:
        return None
    age = gated_age(entry, now, policy, ctx.data_versions)
    if age is Age.fresh:
        return _served(entry, "hit")
    if age in (Age.stale, Age.last_good):
        note = await ctx.cache.get(failure_note_key(key))
        last_good = entry if usable_as_last_good(entry, now, policy) else None
        if note is not None and last_good is not None:
            # the backend failed a moment ago: the last good answer now, a retry later
            return _served(entry, "last_good") | {
                "failure": _failure(note),
                "last_good": last_good,
                "revalidate": may_retry(note, now),
            }
        if age is Age.stale:
            return _served(entry, "stale") | {
                "stale": True,
                "stale_reason": "revalidating",
                "revalidate": True,
            }
    return None


async def _lead_or_share(
    state: State, ctx: Context, key: str, policy: Policy, last_good: dict[str, Any] | None
) -> dict[str, Any]:
    miss = {"cache_hit": False, "last_good": last_good}
    if ctx.leases is None:
        return miss | {
            "lease": None,
            "outcome": "bypass_refresh" if state.get("refresh") else "miss",
        }
    for _ in range(_LEAD_ATTEMPTS):
        role = await ctx.leases.lead_or_follow(key, wait_s=ctx.lease_wait_s)
        if role.leads:
            if role.token is not None and not state.get("refresh"):
                # a leader may have written the answer between our read and our lease
                again = _valid(await ctx.cache.get(key))
                if (
                    again is not None
                    and gated_age(again, ctx.clock(), policy, ctx.data_versions) is Age.fresh
                ):
                    await ctx.leases.release(key, role.token, Outcome(ok=True))
                    return _served(again, "hit")
            outcome = "bypass_refresh" if state.get("refresh") else "miss"
            return miss | {"lease": role.token, "outcome": "takeover" if role.takeover else outcome}
        followed = role.followed
        assert followed is not None
        if not followed.ok:
            return miss | {
                "failure": _failure({"kind": followed.kind, "detail": followed.detail}),
                "outcome": "shared_failure",
            }
        again = _valid(await ctx.cache.get(key))
        if (
            again is not None
            and gated_age(again, ctx.clock(), policy, ctx.data_versions) is Age.fresh
        ):
            # the leader's live answer: shown as live (as a leader in this process would
            # share its run), not as a cache hit
            return _served(again, "shared") | {"cache_hit": False, "shared": True}
        # the leader's answer is not in the cache (not cacheable, or the cache is down)
    return miss | {"lease": None, "outcome": "miss"}


async def _background(
    state: State,
    ctx: Context,
    key: str,
    policy: Policy,
    entry: dict[str, Any] | None,
    last_good: dict[str, Any] | None,
) -> dict[str, Any]:
    now = ctx.clock()
    ahead_s = float(state.get("ahead_s", 0.0))

    def skip(why: str) -> dict[str, Any]:
        if entry is None:
            return {"cache_hit": True, "rows": [], "schema": [], "skipped": True, "outcome": why}
        return _served(entry, why) | {"skipped": True}

    def needed(e: dict[str, Any] | None) -> bool:
        return refresh_needed(e, ctx.clock(), policy, ahead_s, ctx.data_versions)

    if not needed(entry):
        return skip("skip_fresh")
    if not may_retry(await ctx.cache.get(failure_note_key(key)), now):
        return skip("skip_backoff")
    if ctx.leases is None:
        return {"cache_hit": False, "last_good": last_good, "lease": None, "outcome": "refresh"}
    role = await ctx.leases.lead_or_follow(key, wait_s=0, follow=False)
    if not role.leads or role.token is None:
        return skip("skip_busy")
    again = _valid(await ctx.cache.get(key))
    if not needed(again):  # refreshed by another instance meanwhile
        await ctx.leases.release(key, role.token, Outcome(ok=True))
        assert again is not None
        return _served(again, "skip_fresh") | {"skipped": True}
    return {"cache_hit": False, "last_good": last_good, "lease": role.token, "outcome": "refresh"}
