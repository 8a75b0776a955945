"""ChangeWatcher with doubles: probes per interval, what a moved version refreshes, who is
told, and the on_table_changed hook (fake clock; the real servers are in
tests/integration/test_change_refresh.py)."""

from __future__ import annotations

from typing import Any

from adapters.data_versions import LocalVersionBoard
from domain.access import RowAccess
from domain.data_versions import DataVersionGate, TableChange
from domain.freshness import Freshness
from domain.lease import Outcome, Waited
from service.changes import ChangeWatcher, WidgetChanged

T, U = "main.claims.claim_events", "main.ops.alerts"


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


class Versions:
    def __init__(self) -> None:
        self.of: dict[str, int | None] = {T: 1, U: 1, "postgres:m": 0}
        self.probed: list[str] = []

    async def probe(self, source: str) -> int | None:
        self.probed.append(source)
        return self.of[source]


class Runs:
    def __init__(self, outcome: str = "refresh") -> None:
        self.outcome = outcome
        self.inputs: list[dict[str, Any]] = []

    async def __call__(self, inputs: dict[str, Any]) -> dict[str, Any]:
        self.inputs.append(inputs)
        return {
            "response": {"live_data_unavailable": False},
            "trace": [{"node": "cache_lookup", "ms": 0.1, "outcome": self.outcome}],
        }


class Leases:
    def __init__(self) -> None:
        self.waited: list[str] = []

    async def wait(self, key: str, timeout_s: float) -> Waited:
        self.waited.append(key)
        return Waited("done", Outcome(ok=True))


def hint(key: str, versions: dict[str, int] | None) -> dict[str, Freshness]:
    flags = {"revalidate": False, "live": False, "hit": True, "skipped": False}
    return {"freshness": Freshness(key, 2000.0, 10.0, **flags, versions=versions)}


def watcher(runs: Runs, versions: Versions, **kw: Any) -> ChangeWatcher:
    clock = Clock()
    return ChangeWatcher(
        gate=DataVersionGate(valid_s=10, clock=clock),
        versions=versions,
        board=LocalVersionBoard(),
        sources=lambda: [T, U, "postgres:m"],
        run=runs,
        clock=clock,
        **kw,
    )


def answered(w: ChangeWatcher, key: str, widget: str, versions: dict[str, int]) -> None:
    inputs = {"widget_id": widget, "refresh": False, "access": RowAccess(tenant="acme")}
    w.observe(inputs, hint(key, versions))


async def test_a_moved_version_refreshes_the_keys_over_it_and_tells_the_tenant() -> None:
    runs, versions = Runs(), Versions()
    w = watcher(runs, versions)
    await w.probe_once()
    assert sorted(versions.probed) == sorted([T, U, "postgres:m"])  # each source once
    assert w.gate.stamp([T]) == {T: 1} and w.changes == []
    answered(w, "k1", "w1", {T: 1})
    answered(w, "k2", "w2", {U: 1})
    w.observe({"widget_id": "w3"}, hint("k3", None))
    assert w.keys_over(T) == ["k1"]
    seen: list[TableChange] = []
    w.on_table_changed.append(seen.append)
    with w.hub.subscribe("acme") as acme, w.hub.subscribe("other") as other:
        versions.of[T] = 2
        await w.probe_once()
        await w.idle()
        assert [(c.source, c.old, c.new) for c in seen] == [(T, 1, 2)]
        assert [i["widget_id"] for i in runs.inputs] == ["w1"]  # only the key over T
        assert runs.inputs[0]["background"] is True and runs.inputs[0]["ahead_s"] == 0.0
        assert acme.get_nowait() == WidgetChanged("acme", "w1", T)
        assert acme.empty() and other.empty()
    # the same version again: nothing more
    await w.probe_once()
    await w.idle()
    assert len(runs.inputs) == 1


async def test_a_refresh_another_instance_leads_is_waited_for_then_told() -> None:
    runs, leases = Runs("skip_busy"), Leases()
    w = watcher(runs, Versions(), leases=leases)
    await w.probe_once()
    answered(w, "k1", "w1", {T: 1})
    with w.hub.subscribe("acme") as acme:
        w.learn(T, 5)
        await w.idle()
        assert leases.waited == ["k1"]
        assert acme.get_nowait().widget_id == "w1"


async def test_a_refresh_in_backoff_tells_nobody() -> None:
    w = watcher(Runs("skip_backoff"), Versions())
    await w.probe_once()
    answered(w, "k1", "w1", {T: 1})
    with w.hub.subscribe("acme") as acme:
        w.learn(T, 2)
        await w.idle()
        assert acme.empty()


async def test_keys_nobody_read_lately_are_not_refreshed() -> None:
    runs = Runs()
    w = watcher(runs, Versions(), forget_s=60)
    await w.probe_once()
    answered(w, "k1", "w1", {T: 1})
    w.clock.now += 61  # type: ignore[attr-defined]
    w.learn(T, 2)
    await w.idle()
    assert runs.inputs == [] and w.keys_over(T) == []


async def test_a_postgres_notify_is_a_change_of_its_metric() -> None:
    runs = Runs()
    w = watcher(runs, Versions())
    await w.probe_once()
    answered(w, "kp", "kpi", {"postgres:m": 0})
    await w.metric_changed("m", 1)
    await w.idle()
    assert [i["widget_id"] for i in runs.inputs] == ["kpi"]


async def test_a_failed_probe_leaves_the_version_unconfirmed() -> None:
    versions = Versions()
    w = watcher(Runs(), versions)
    versions.of[T] = None
    await w.probe_once()
    assert w.gate.stamp([T]) is None and w.gate.verdict({T: 1}) == "unknown"
    versions.of[T] = 1
    await w.probe_once()
    assert w.gate.verdict({T: 1}) == "unchanged"
    versions.of[T] = None
    w.clock.now += 11  # type: ignore[attr-defined]
    await w.probe_once()
    assert w.gate.verdict({T: 1}) == "unknown"  # no probe confirmed it within valid_s


async def test_callbacks_run_before_the_refreshes_and_unstamped_answers_are_forced() -> None:
    runs = Runs()
    w = watcher(runs, Versions())
    w.sources_for = lambda inputs: (T,) if inputs["widget_id"] == "rolled" else ()
    await w.probe_once()
    inputs = {"widget_id": "rolled", "refresh": False, "access": RowAccess(tenant="acme")}
    w.observe(inputs, hint("kr", None))  # e.g. a rollup answer
    w.observe({"widget_id": "llm"}, hint("kl", None))
    assert w.keys_over(T) == ["kr"]
    order: list[str] = []

    answered(w, "ks", "stamped", {T: 1})  # read from the warehouse: refreshed at once

    async def rebuild(change: TableChange) -> None:
        order.append(f"rebuild {change.new}")
        # no rollup answer refreshed before the rollup is rebuilt
        assert "rolled" not in [i["widget_id"] for i in runs.inputs]

    w.on_table_changed.append(rebuild)
    w.learn(T, 2)
    await w.idle()
    assert order == ["rebuild 2"]
    # the rollup answer: refreshed if resolved before the change was seen (its TTL is 10 s)
    assert sorted((i["widget_id"], i["ahead_s"]) for i in runs.inputs) == [
        ("rolled", 10.0),
        ("stamped", 0.0),
    ]


async def test_rollups_rebuild_their_update_window_from_the_new_version() -> None:
    from datetime import UTC, datetime

    from domain.config import load_rollups
    from metricsql.rollups import compile_rollup, update_window
    from service.changes import rebuild_rollups
    from tests.support.servers import CONFIG_DIR

    class Rollups:
        def __init__(self) -> None:
            name, rollup = next(iter(load_rollups(CONFIG_DIR / "rollups.yaml").items()))
            self.rollups = {"r": compile_rollup(name, rollup)}
            self.calls: list[tuple[str, list[datetime], str | None]] = []

        async def build_partitions(
            self, name: str, partitions: list[datetime], *, data_version: str | None = None
        ) -> str:
            self.calls.append((name, partitions, data_version))
            return "report"

    store = Rollups()
    rollup = store.rollups["r"]
    callback = rebuild_rollups(store)
    ignored = callback(TableChange("main.ops.nothing_rolled_up", 1, 2, 1000.0))
    assert ignored is not None
    await ignored
    assert store.calls == []
    source = rollup.definition.table.lower()
    rebuilt = callback(TableChange(source, 1, 2, 1_790_000_000.0))
    assert rebuilt is not None
    await rebuilt
    now = datetime.fromtimestamp(1_790_000_000.0, UTC)
    assert store.calls == [(rollup.name, update_window(rollup, now), "2")]
