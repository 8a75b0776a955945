"""The data-version gate: verdicts on stamps, and freshness with versions (fake clock)."""

from __future__ import annotations

from domain.data_versions import (
    DataVersionGate,
    gated_age,
    postgres_source,
    refresh_needed,
    sources_of,
)
from domain.freshness import Age, Policy

T = "main.claims.claim_events"
U = "main.ops.alerts"
POLICY = Policy(ttl_s=10, swr_s=10, sie_s=60)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def gate(clock: Clock) -> DataVersionGate:
    return DataVersionGate(valid_s=9.0, clock=clock)


def entry(resolved_at: float, versions: dict[str, int] | None) -> dict:
    e: dict = {"rows": [], "resolved_at": resolved_at, "ttl_s": 10, "swr_s": 10, "sie_s": 60}
    if versions is not None:
        e["versions"] = versions
    return e


def test_sources_of_each_kind_of_answer() -> None:
    assert sources_of(T.upper(), "m", "databricks", "compiled") == (T,)
    assert sources_of(T, "m", "databricks", "llm") == ()  # LLM SQL may read any table
    assert sources_of("kpi_metrics_history", "nba", "postgres", "compiled") == (
        postgres_source("nba"),
    )


def test_learning_versions_reports_only_forward_moves() -> None:
    clock = Clock()
    g = gate(clock)
    assert g.learn(T, 3) is None  # the first version is no change
    assert g.learn(T, 3) is None
    assert g.learn(T, 2) is None  # an older report never moves it back
    change = g.learn(T, 4)
    assert change is not None and (change.old, change.new) == (3, 4)
    assert g.known(T).version == 4  # type: ignore[union-attr]


def test_stamp_needs_every_source_known() -> None:
    clock = Clock()
    g = gate(clock)
    assert g.stamp([T]) is None  # never probed
    g.learn(T, 5)
    assert g.stamp([T]) == {T: 5}
    assert g.stamp([T, U]) is None  # one source never learned
    assert g.stamp([]) is None
    clock.now += 10  # no probe confirmed it within valid_s: still the latest known
    assert g.stamp([T]) == {T: 5}
    assert g.verdict({T: 5}) == "unknown"  # ... but it holds no answer fresh


def test_verdicts() -> None:
    clock = Clock()
    g = gate(clock)
    assert g.verdict(None) == "unknown"
    assert g.verdict({T: 1}) == "unknown"  # a source never learned
    g.learn(T, 1)
    assert g.verdict({T: 1}) == "unchanged"
    assert g.verdict({T: 2}) == "unchanged"  # the stamp is newer than this process knows
    clock.now += 10
    assert g.verdict({T: 1}) == "unknown"  # probes failing: the TTL decides
    g.learn(T, 2)
    assert g.verdict({T: 1}) == "moved"  # moved, confirmed or not


def test_unchanged_versions_keep_an_answer_fresh_past_its_ttl() -> None:
    clock = Clock()
    g = gate(clock)
    g.learn(T, 1)
    old = entry(clock.now - 500, {T: 1})  # far past its TTL and both windows
    assert gated_age(old, clock.now, POLICY, None) is Age.expired
    assert gated_age(old, clock.now, POLICY, g) is Age.fresh
    assert not refresh_needed(old, clock.now, POLICY, ahead_s=1000, gate=g)


def test_moved_versions_make_an_answer_stale_at_once() -> None:
    clock = Clock()
    g = gate(clock)
    g.learn(T, 1)
    young = entry(clock.now - 1, {T: 1})
    g.learn(T, 2)
    assert gated_age(young, clock.now, POLICY, g) is Age.stale  # fresh by its TTL
    assert refresh_needed(young, clock.now, POLICY, ahead_s=0, gate=g)
    old = entry(clock.now - 500, {T: 1})
    assert gated_age(old, clock.now, POLICY, g) is Age.stale  # served while refreshed...
    clock.now += POLICY.swr_s
    assert gated_age(old, clock.now, POLICY, g) is Age.expired  # ... for swr after the move


def test_unknown_versions_fall_back_to_the_ttl() -> None:
    clock = Clock()
    g = gate(clock)
    g.learn(T, 1)
    unstamped = entry(clock.now - 15, None)
    assert gated_age(unstamped, clock.now, POLICY, g) is Age.stale  # as by its TTL
    stamped = entry(clock.now - 15, {T: 1})
    clock.now += 10  # no probe confirmed the version since
    assert gated_age(stamped, clock.now, POLICY, g) is Age.last_good  # 25 s past: by its TTL
    assert refresh_needed(stamped, clock.now, POLICY, ahead_s=0, gate=g)
