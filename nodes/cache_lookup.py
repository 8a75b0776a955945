"""cache_lookup: answer from the cache when the entry allows it, else lead the backend
query for this key or share the answer of the resolution already leading it.

- fresh entry: a hit;
- stale entry (within stale-while-revalidate): answered at once, flagged `stale`
  (`revalidating`), and the service starts one background refresh (`revalidate`);
- a refresh failed a moment ago (a failure note next to the entry): the last good entry
  (within stale-if-error) is answered at once with that failure, and the backend is only
  tried again in the background once the note's backoff is over;
- otherwise the backend is needed: under the key's lease one resolution across all
  instances runs it; the others wait for its outcome and re-read the cache, or take its
  failure (and then answer from the last good entry or the mock).
A background refresh (`background`) never waits: it skips when another resolution holds
the lease, when the entry has more than `ahead_s` left, or while a failure's backoff runs.
`refresh=true` skips the fresh read (a last good entry may still stand in for a failure),
except within `refresh_min_interval_s` of the entry's live resolution, when it is answered
from that resolution (`refresh=true` cannot hammer a backend); dry runs bypass the cache.

The runner (graph/runner.py) reads the entry once (`probe`, handed on in `probe`), asks
`needs_lease`, and when the backend is needed runs this node inside the key's leadership
scope (`lead`, domain/lease.py): the leader reads once more (another instance may have
filled the entry meanwhile), a follower reads the leader's answer. Run bare (Studio, node
tests) the node reads the entry itself and, given no `lead`, goes to the backend without a
lease.
"""

from __future__ import annotations

from typing import Any, Literal

from langgraph.runtime import Runtime

from domain.data_versions import gated_age, refresh_needed
from domain.failures import FailureKind
from domain.freshness import (
    Age,
    Policy,
    Probe,
    failure_note_key,
    may_retry,
    usable_as_last_good,
)
from domain.lease import Lead
from graph.context import Context
from graph.state import Failure, State
from nodes._common import traced

# every outcome cache_lookup reports (graph/observe.py and service/refresh.py decode them)
CacheOutcome = Literal[
    "hit",
    "stale",
    "last_good",
    "refresh_debounced",
    "miss",
    "takeover",
    "bypass_refresh",
    "bypass_dry_run",
    "shared",
    "shared_failure",
    "refresh",
    "skip_fresh",
    "skip_backoff",
    "skip_busy",
]


def _valid(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    ok = entry is not None and isinstance(entry.get("rows"), list) and "resolved_at" in entry
    return entry if ok else None


def _served(entry: dict[str, Any], outcome: CacheOutcome) -> dict[str, Any]:
    return {
        "cache_hit": True,
        "rows": entry["rows"],
        "schema": entry.get("schema", []),
        "generated_sql": entry.get("generated_sql"),
        "resolved_at": entry["resolved_at"],
        "truncated": entry.get("truncated", False),
        "rollup": entry.get("rollup"),
        "trust": entry.get("trust"),
        "verification": entry.get("verification"),
        "executed": True,
        "outcome": outcome,
        "data_versions": entry.get("versions"),
    }


def _failure(kind: Any, detail: Any) -> Failure | None:
    """A failure another run met (a failure note, a lease leader's outcome), taken over by
    this one; None when its kind is not one of ours (an entry of another version)."""
    try:
        return {"kind": FailureKind(kind), "detail": str(detail), "node": "cache_lookup"}
    except ValueError:
        return None


async def probe(state: State, ctx: Context) -> Probe | None:
    """The one read that decides: the key's entry, and its failure note when the entry is
    not fresh (or for a background refresh). None for a dry run (no cache)."""
    if state.get("dry_run"):
        return None
    key = state["cache_key"]
    now = ctx.clock()
    entry = _valid(await ctx.cache.get(key))
    note = None
    policy = Policy.of(state["routing"])
    fresh = entry is not None and gated_age(entry, now, policy, ctx.data_versions) is Age.fresh
    if state.get("background") or (entry is not None and not fresh and not state.get("refresh")):
        note = await ctx.cache.get(failure_note_key(key))
    return Probe(entry=entry, note=note, at=now)


def needs_lease(state: State, ctx: Context, read: Probe | None) -> bool:
    """Whether the backend is needed (so the runner takes the key's lead) for this read."""
    if read is None or ctx.leases is None:
        return False
    policy = Policy.of(state["routing"])
    if state.get("background"):
        return _background_needed(state, ctx, read.entry, policy) and may_retry(read.note, read.at)
    return not answers_from_cache(state, ctx, read)


def answers_from_cache(state: State, ctx: Context, read: Probe | None) -> bool:
    """Whether this read answers a foreground resolution as it stands (a hit, a stale entry
    served while it revalidates, a last good one within a failure's backoff): no backend,
    so no lease and nothing to share."""
    if read is None or read.entry is None or state.get("background"):
        return False
    policy = Policy.of(state["routing"])
    return _from_entry(ctx, read, policy, refresh=_refresh(state)) is not None


def _refresh(state: State) -> bool:
    return bool(state.get("refresh"))


def _background_needed(
    state: State, ctx: Context, entry: dict[str, Any] | None, policy: Policy
) -> bool:
    ahead_s = float(state.get("ahead_s", 0.0))
    return refresh_needed(entry, ctx.clock(), policy, ahead_s, ctx.data_versions)


@traced("cache_lookup")
async def cache_lookup(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = runtime.context
    if state.get("dry_run"):
        return {"cache_hit": False, "outcome": "bypass_dry_run"}
    policy = Policy.of(state["routing"])
    read = state.get("probe") or await probe(state, ctx)
    assert read is not None
    entry = read.entry
    last_good = entry if usable_as_last_good(entry, read.at, policy) else None
    lead = state.get("lead")
    if state.get("background"):
        return await _background(state, ctx, policy, read, last_good, lead)
    if entry is not None:
        answer = _from_entry(ctx, read, policy, refresh=_refresh(state))
        if answer is not None:
            return answer
    return await _lead_or_share(state, ctx, policy, last_good, lead)


def _from_entry(
    ctx: Context, read: Probe, policy: Policy, *, refresh: bool
) -> dict[str, Any] | None:
    """The answer a foreground read takes from the entry without the backend, or None."""
    entry, now = read.entry, read.at
    if entry is None:
        return None
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
        note = read.note
        last_good = entry if usable_as_last_good(entry, now, policy) else None
        failure = _failure(note.get("kind"), note.get("detail")) if note is not None else None
        if note is not None and failure is not None and last_good is not None:
            # the backend failed a moment ago: the last good answer now, a retry later
            return _served(entry, "last_good") | {
                "failure": failure,
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


async def _fresh_again(ctx: Context, key: str, policy: Policy) -> dict[str, Any] | None:
    """The second read: the entry, if fresh now (filled by the leader we followed, or by
    another instance between our first read and our lease)."""
    again = _valid(await ctx.cache.get(key, latest=True))
    if again is None or gated_age(again, ctx.clock(), policy, ctx.data_versions) is not Age.fresh:
        return None
    return again


async def _lead_or_share(
    state: State, ctx: Context, policy: Policy, last_good: dict[str, Any] | None, lead: Lead | None
) -> dict[str, Any]:
    key = state["cache_key"]
    refresh = _refresh(state)
    miss: dict[str, Any] = {"cache_hit": False, "last_good": last_good}
    outcome: CacheOutcome = "bypass_refresh" if refresh else "miss"
    if lead is None:  # no leases (or run bare): the backend, unshared
        return miss | {"outcome": outcome}
    if lead.leads:
        if lead.held and not refresh:
            again = await _fresh_again(ctx, key, policy)
            if again is not None:
                return _served(again, "hit")
        return miss | {"outcome": "takeover" if lead.takeover else outcome}
    followed = lead.followed
    assert followed is not None
    failure = None if followed.ok else _failure(followed.kind, followed.detail)
    if failure is not None:
        return miss | {"failure": failure, "outcome": "shared_failure"}
    again = await _fresh_again(ctx, key, policy)
    if again is not None:
        # the leader's live answer: shown as live (as a leader in this process would
        # share its run), not as a cache hit
        return _served(again, "shared") | {"cache_hit": False, "shared": True}
    # the leader's answer is not in the cache (not cacheable, or the cache is down)
    return miss | {"outcome": "miss"}


async def _background(
    state: State,
    ctx: Context,
    policy: Policy,
    read: Probe,
    last_good: dict[str, Any] | None,
    lead: Lead | None,
) -> dict[str, Any]:
    entry = read.entry

    def skip(why: CacheOutcome, e: dict[str, Any] | None = entry) -> dict[str, Any]:
        if e is None:
            return {"cache_hit": True, "rows": [], "schema": [], "skipped": True, "outcome": why}
        return _served(e, why) | {"skipped": True}

    if not _background_needed(state, ctx, entry, policy):
        return skip("skip_fresh")
    if not may_retry(read.note, read.at):
        return skip("skip_backoff")
    refresh: dict[str, Any] = {"cache_hit": False, "last_good": last_good, "outcome": "refresh"}
    if lead is None:
        return refresh
    if not lead.leads or not lead.held:
        return skip("skip_busy")
    again = _valid(await ctx.cache.get(state["cache_key"], latest=True))
    if not _background_needed(state, ctx, again, policy):  # refreshed by another instance
        return skip("skip_fresh", again)
    return refresh
