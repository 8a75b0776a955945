"""One backend query per cache key: the lease port and what leader and followers exchange.

A resolution that needs the backend first asks for the key's lease. The one that gets it
(the leader) runs the query, writes the cache, then releases the lease with an `Outcome`
that every waiting follower receives. A follower never queries: it re-reads the cache
(`ok`) or takes the leader's failure (`kind`, `detail`). When the leader vanishes (its
process died, its lease expired or it stopped beating) a follower takes the lease over.

Leadership is one scope: `async with leases.lead(key, wait_s=...) as lead:` around the work
it protects (graph/runner.py). It yields a `Lead` (lead, or the leader's outcome); the
leader `settle`s the outcome its followers receive, and the scope releases the lease when it
ends: with that outcome, or `abandoned` when the work raised, timed out or was cancelled.
The lease's token never leaves the adapter.

Pure: no framework imports. `adapters/lease/` implements it on Redis and in-process.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Literal, Protocol


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a leader tells its followers when it releases the lease."""

    ok: bool  # a live answer is in the cache now
    kind: str | None = None  # the failure kind otherwise (or "abandoned")
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Waited:
    """How a follower's wait ended."""

    how: Literal["done", "gone", "vanished", "timeout"]
    outcome: Outcome | None = None


@dataclass(frozen=True, slots=True)
class Role:
    """The result of `lead_or_follow`: lead (with the lease's token, or with `token=None`
    when no lease could be had and the caller computes anyway), or the leader's outcome."""

    token: str | None = None
    followed: Outcome | None = None
    takeover: bool = False  # the lease was taken from a leader that vanished
    waited_s: float = 0.0

    @property
    def leads(self) -> bool:
        return self.followed is None


@dataclass(slots=True)
class Lead:
    """What `Leases.lead` yields: this resolution's part in the key's flight.

    `leads`: run the work (under the lease, or without one when none could be had within
    the wait); else `followed` is the leader's outcome. The leader calls `settle` with the
    outcome its followers get when the scope ends (unsettled: `abandoned`)."""

    leads: bool
    followed: Outcome | None = None
    takeover: bool = False  # the lease was taken from a leader that vanished
    held: bool = False  # a lease is held (False: leading without one, or following)
    outcome: Outcome | None = field(default=None)

    def settle(self, outcome: Outcome) -> None:
        self.outcome = outcome


ABANDONED = "abandoned"  # outcome kind of a lease released because its run ended early
# lead_or_follow(follow=False) while another resolution holds the lease
BUSY = Outcome(ok=False, kind="busy", detail="another resolution holds the lease")
# the lease went away without an outcome seen: the cache may have the answer, re-read it
GONE = Outcome(ok=True, kind=None, detail="the lease was released or expired")


class Leases(Protocol):
    """Per-key leases. Never raises for an unreachable store: it degrades to in-process.
    Leadership is taken only as a scope (`lead`); tokens, acquire and release stay inside
    the adapter (adapters/lease/)."""

    async def wait(self, key: str, timeout_s: float) -> Waited:
        """Wait for the current leader's outcome, at most `timeout_s` (no lead taken)."""
        ...

    def lead(
        self, key: str, *, wait_s: float, follow: bool = True
    ) -> AbstractAsyncContextManager[Lead]:
        """The key's leadership as one scope (see the module docstring): lead, or (if
        `follow`) wait for the leader's outcome, taking over if it vanishes, on entry (with
        `follow=False` a held lease is at once the outcome `busy`); the release (the
        settled outcome, else `abandoned`) on exit."""
        ...
