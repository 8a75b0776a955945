"""Data versions: a cached answer stays fresh while the data under it has not changed.

Every source an answer reads has a version that moves when its data changes: a warehouse
table (its three-part name; Delta's `DESCRIBE HISTORY <table> LIMIT 1` version), or a
PostgreSQL metric (`postgres:<metric>`: a counter a trigger on kpi_metrics_history bumps).
The service probes each source on an interval (once per interval fleet-wide) and feeds the
versions it learns to one `DataVersionGate` per process.

An answer is stamped, before its query runs, with the versions the gate knew of its
sources. Later, the gate's verdict on that stamp:
- `unchanged`: every source was confirmed recently (a probe within `valid_s`) at the
  stamped version or older: the answer is fresh whatever its TTL (nothing re-runs);
- `moved`: a source's version is past the stamp: the answer is stale at once (served
  flagged, refreshed);
- `unknown`: no stamp (an LLM answer, a source without a version) or a source not confirmed
  within `valid_s` (its probes fail): the TTL decides, as without versions.

Pure: no framework imports.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from domain.freshness import Age, Policy, age_of, expires_at

Verdict = Literal["unchanged", "moved", "unknown"]
Stamp = dict[str, int]  # source -> the version the answer was read at

POSTGRES_PREFIX = "postgres:"


def postgres_source(metric: str) -> str:
    return POSTGRES_PREFIX + metric


def sources_of(table: str, metric: str, backend: str, generator: str) -> tuple[str, ...]:
    """The versioned sources one answer reads: a PostgreSQL metric's, or the table of a
    compiled warehouse metric. LLM SQL may read any allowlisted table: none (its TTL rules)."""
    if backend == "postgres":
        return (postgres_source(metric),)
    if generator == "compiled" and table.count(".") == 2:
        return (table.lower(),)
    return ()


@dataclass(frozen=True, slots=True)
class Known:
    version: int
    seen_at: float  # when this version was first learned here
    checked_at: float  # the last probe that confirmed it


@dataclass(frozen=True, slots=True)
class TableChange:
    """A source's version moved (what `on_table_changed` callbacks receive)."""

    source: str
    old: int | None
    new: int
    seen_at: float


class DataVersionGate:
    """The versions this process knows, and verdicts on stamps. `retention_s`: how long
    the cache keeps a stamped entry (it stays fresh while its versions hold)."""

    def __init__(
        self,
        *,
        valid_s: float,
        retention_s: int = 86_400,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.valid_s = valid_s
        self.retention_s = retention_s
        self._clock = clock
        self._known: dict[str, Known] = {}

    def learn(
        self, source: str, version: int, *, checked_at: float | None = None
    ) -> TableChange | None:
        """A probe (here or on another instance) saw `version` at `checked_at`. Returns the
        change when the version moved forward (an older report never moves it back)."""
        now = self._clock()
        at = now if checked_at is None else checked_at
        known = self._known.get(source)
        if known is None or version > known.version:
            self._known[source] = Known(version, now, at)
            if known is None:
                return None  # the first version learned is no change
            return TableChange(source, known.version, version, now)
        if version == known.version and at > known.checked_at:
            self._known[source] = Known(known.version, known.seen_at, at)
        return None

    def known(self, source: str) -> Known | None:
        return self._known.get(source)

    def _confirmed(self, source: str, now: float) -> Known | None:
        known = self._known.get(source)
        if known is None or now - known.checked_at > self.valid_s:
            return None
        return known

    def stamp(self, sources: Iterable[str]) -> Stamp | None:
        """The versions to stamp an answer with, taken before its query runs: the latest
        known, confirmed lately or not (the data the query reads is at least that new; if it
        is newer, a later probe moves past the stamp and the answer is refreshed once). None
        when a source's version was never learned (the answer then lives by its TTL)."""
        out: Stamp = {}
        for source in sources:
            known = self._known.get(source)
            if known is None:
                return None
            out[source] = known.version
        return out or None

    def verdict(self, stamp: Mapping[str, Any] | None) -> Verdict:
        if not stamp:
            return "unknown"
        now = self._clock()
        confirmed = True
        for source, version in stamp.items():
            known = self._known.get(source)
            if known is not None and known.version > int(version):
                return "moved"
            if self._confirmed(source, now) is None:
                confirmed = False
        return "unchanged" if confirmed else "unknown"

    def moved_at(self, stamp: Mapping[str, Any]) -> float:
        """When this process learned that the stamp's data moved (the latest such source)."""
        seen = [
            k.seen_at
            for s, v in stamp.items()
            if (k := self._known.get(s)) is not None and k.version > int(v)
        ]
        return max(seen, default=self._clock())


# ------------------------------------------------------------------ freshness, gated


def gated_age(
    entry: Mapping[str, Any], now: float, policy: Policy, gate: DataVersionGate | None
) -> Age:
    """The entry's age (domain.freshness.age_of), with its data versions taken into account:
    unchanged versions keep it fresh past its TTL; moved ones make it stale at once (served
    flagged while one refresh runs, for its stale-while-revalidate window after the move)."""
    age = age_of(entry, now, policy)
    if gate is None:
        return age
    verdict = gate.verdict(entry.get("versions"))
    if verdict == "unchanged":
        return Age.fresh
    if verdict == "moved":
        if age is Age.fresh:
            return Age.stale
        if now - gate.moved_at(entry["versions"]) < policy.swr_s:
            return Age.stale
    return age


def refresh_needed(
    entry: Mapping[str, Any] | None,
    now: float,
    policy: Policy,
    ahead_s: float,
    gate: DataVersionGate | None,
) -> bool:
    """Whether a background refresh has work: no entry, versions that moved, or (versions
    unknown) an entry within `ahead_s` of its TTL. Unchanged versions: nothing to re-run."""
    if entry is None:
        return True
    if gate is not None:
        verdict = gate.verdict(entry.get("versions"))
        if verdict == "unchanged":
            return False
        if verdict == "moved":
            return True
    return expires_at(entry, policy) - now <= ahead_s
