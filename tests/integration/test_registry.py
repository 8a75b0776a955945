"""Registry snapshot, store, boot validation and cross-instance refresh (real PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg.types.json import Jsonb

from adapters.pg_migrate import migrate
from adapters.pg_seed import load_catalog, load_widgets, seed
from adapters.postgres import PgGateway
from adapters.registry import (
    RegistryHolder,
    RegistrySnapshot,
    RegistryStore,
    load_routing,
    validate_boot,
)
from domain.config import read_routing
from domain.failures import FailureKind, InvalidIntent, PostgresFailure
from domain.models import DataIntent, RoutingEntry, WidgetSpec
from fakes.tcp_proxy import TcpProxy
from tests.support.clocks import until

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
ROUTING = CONFIG_DIR / "metric_routing.yaml"
CATALOG = load_catalog(CONFIG_DIR / "metrics.yaml")
WIDGETS = load_widgets(CONFIG_DIR / "widgets.yaml")


def spec(title: str = "Test tile", metric_id: str = "nba_taken_pct") -> WidgetSpec:
    return WidgetSpec(
        title=title,
        kind="kpi",
        data_intent=DataIntent(metric_id=metric_id),
        mock_data=[{"value": 1}],
    )


@pytest.fixture
def db_url(fresh_pg_url: str) -> str:
    asyncio.run(migrate(fresh_pg_url))
    asyncio.run(seed(fresh_pg_url, CONFIG_DIR, history_days=1))
    return fresh_pg_url


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[RegistryStore]:
    gw = PgGateway(db_url)
    await gw.open()
    yield RegistryStore(gw.pool, ROUTING)
    await gw.close()


@pytest.fixture
def proxy(db_url: str) -> Iterator[TcpProxy]:
    host, _, port = db_url.split("@", 1)[1].split("/", 1)[0].partition(":")
    p = TcpProxy(host, int(port or 5432))
    p.start()
    yield p
    p.close()


async def eventually(check: Callable[[], bool], deadline_s: float = 10.0) -> None:
    await until(check, timeout_s=deadline_s, every_s=0.05)


# ------------------------------------------------------------------------------ snapshot + boot


async def test_load_snapshot_from_pg_and_yaml(store: RegistryStore) -> None:
    snap = await store.load()
    assert snap.widgets() == WIDGETS
    assert snap.metrics() == CATALOG
    assert set(snap.routings()) == set(CATALOG)
    assert snap.routing("nba_taken_pct") == RoutingEntry(backend="postgres", ttl_seconds=300)
    assert snap.widget("nope") is None and snap.metric("nope") is None
    assert validate_boot(snap) == []
    # content-addressed version: equal for equal content, different after a change
    assert (await store.load()).version == snap.version
    assert snap.with_widget("x", spec()).version != snap.version


def test_snapshot_is_immutable() -> None:
    snap = RegistrySnapshot.build({"w": spec()}, CATALOG, {})
    snap.widgets().clear()
    assert snap.widget("w") is not None
    with pytest.raises(TypeError):
        snap._tenants["x"] = {}  # type: ignore[index]
    with pytest.raises(AttributeError):
        snap._version = "x"  # type: ignore[misc]


def test_validate_boot_names_each_offending_entry(tmp_path: Path) -> None:
    entries = {name: {"backend": "postgres"} for name in CATALOG}
    del entries["claims_paid_amount"]
    entries["nba_taken_pct"] = {"backend": "postgress"}
    entries["retired_metric"] = {"backend": "databricks"}
    path = tmp_path / "metric_routing.yaml"
    path.write_text(yaml.safe_dump({"metrics": entries}))
    routing, routing_errors = read_routing(path)
    widgets = {
        "ok-widget": spec(),
        "ghost-widget": spec(metric_id="no_such_metric"),
        "bad-dim-widget": WidgetSpec(
            title="t",
            kind="bar",
            data_intent=DataIntent(metric_id="nba_taken_pct", dimensions=["region"]),
            mock_data=[{"value": 1}],
        ),
    }
    problems = validate_boot(
        RegistrySnapshot.build(widgets, CATALOG, routing, tuple(routing_errors))
    )
    text = "\n".join(problems)
    assert len(problems) == 5, text
    assert "'claims_paid_amount' has no entry" in text
    assert (
        "'nba_taken_pct': backend: Input should be 'postgres' or 'databricks', not 'postgress'"
        in text
    )
    assert "'nba_taken_pct' has no entry" not in text  # named once, as the invalid entry
    assert "'retired_metric': metric is not in the catalog" in text
    assert "'ghost-widget'" in text and "no_such_metric" in text
    assert "'bad-dim-widget'" in text and "'region'" in text
    assert "ok-widget" not in text


def test_validate_boot_refuses_a_postgres_metric_the_gateway_cannot_serve() -> None:
    from adapters.postgres import postgres_problems
    from domain.models import MetricDefinition

    bad = CATALOG["nba_taken_pct"].model_copy(
        update={
            "definition": MetricDefinition(
                table="kpi_metrics_history", aggregation="avg", dimensions=["Channel"]
            )
        }
    )
    catalog = CATALOG | {"nba_taken_pct": bad}
    routing = load_routing(ROUTING)
    snap = RegistrySnapshot.build({}, catalog, routing, ())
    assert (
        validate_boot(
            RegistrySnapshot.build({}, CATALOG, routing, ()), postgres_problems=postgres_problems
        )
        == []
    )
    [problem] = validate_boot(snap, postgres_problems=postgres_problems)
    assert (
        "'nba_taken_pct'" in problem and "'Channel'" in problem and "routed to postgres" in problem
    )


def test_load_routing_errors_name_the_entry(tmp_path: Path) -> None:
    assert load_routing(ROUTING)["claims_insights"].generator == "llm"
    bad = tmp_path / "routing.yaml"
    bad.write_text(
        yaml.safe_dump({"metrics": {"nba_taken_pct": {"backend": "postgres", "ttl_seconds": -1}}})
    )
    with pytest.raises(ValueError, match=r"nba_taken_pct.*ttl_seconds"):
        load_routing(bad)
    bad.write_text("metrics: [a, b]")
    with pytest.raises(ValueError, match="mapping"):
        load_routing(bad)
    with pytest.raises(ValueError, match="not found"):
        load_routing(tmp_path / "missing.yaml")


async def test_invalid_stored_rows_are_left_out_and_reported(
    store: RegistryStore, db_url: str
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO widgets (id, spec) VALUES ('corrupt-widget', %s)", (Jsonb({"title": ""}),)
        )
    snap = await store.load()
    assert snap.widget("corrupt-widget") is None
    assert any("corrupt-widget" in p for p in validate_boot(snap))


# ------------------------------------------------------------------------------ writes


async def test_put_and_delete_widget(store: RegistryStore, db_url: str) -> None:
    holder = await RegistryHolder.create(store)
    v0 = holder.version
    assert await holder.put_widget("my-tile", spec("First")) is True
    assert holder.widget("my-tile") == spec("First")  # visible at once, locally
    assert holder.version != v0
    assert await holder.put_widget("my-tile", spec("Second")) is False
    assert holder.widget("my-tile") == spec("Second")
    assert (await store.load()).widget("my-tile") == spec("Second")

    with pytest.raises(InvalidIntent, match="no_such_metric"):
        await holder.put_widget("bad-tile", spec(metric_id="no_such_metric"))
    assert holder.widget("bad-tile") is None

    assert await holder.delete_widget("my-tile") is True
    assert holder.widget("my-tile") is None
    assert await holder.delete_widget("my-tile") is False

    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM widgets WHERE id = 'my-tile'").fetchone() == (0,)
    assert holder.version == v0


async def test_notify_from_another_instance_refreshes(store: RegistryStore, db_url: str) -> None:
    other_gw = PgGateway(db_url)
    await other_gw.open()
    a = await RegistryHolder.create(store)
    b = await RegistryHolder.create(RegistryStore(other_gw.pool, ROUTING))
    await a.start()
    await b.start()
    try:
        await a.wait_listening(10)
        await b.wait_listening(10)
        await b.put_widget("shared-tile", spec("From B"))
        await eventually(lambda: a.widget("shared-tile") == spec("From B"))
        await b.delete_widget("shared-tile")
        await eventually(lambda: a.widget("shared-tile") is None)
        # a catalog change made by anyone (here: plain SQL) reaches both
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("UPDATE metrics_catalog SET unit = 'pct' WHERE name = 'nba_taken_pct'")
        await eventually(lambda: all(h.metric("nba_taken_pct").unit == "pct" for h in (a, b)))  # type: ignore[union-attr]
        assert a.version == b.version
    finally:
        await a.stop()
        await b.stop()
        await other_gw.close()


async def test_snapshot_survives_pg_outage_and_reloads_after(proxy: TcpProxy, db_url: str) -> None:
    gw = PgGateway(proxy.url_for(db_url), pool_timeout_s=0.5)
    await gw.open()
    store = RegistryStore(gw.pool, ROUTING, timeout_s=0.5)
    holder = await RegistryHolder.create(store, backoff_min_s=0.1, backoff_max_s=0.5)
    await holder.start()
    try:
        await holder.wait_listening(10)
        before = holder.version

        await proxy.stop()  # awaitable in async tests, a plain call in sync ones
        await eventually(lambda: not holder.listening)
        assert holder.widget("open-issues-kpi") == WIDGETS["open-issues-kpi"]
        with pytest.raises(PostgresFailure) as err:
            await holder.refresh()
        assert err.value.kind is FailureKind.postgres_unavailable
        with pytest.raises(PostgresFailure):
            await holder.put_widget("during-outage", spec())
        assert holder.version == before
        assert len(holder.widgets()) == len(WIDGETS)

        # changed while this instance cannot hear: the notification is lost to it
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO widgets (id, spec) VALUES ('added-in-outage', %s)",
                (Jsonb(spec("Missed").model_dump(mode="json")),),
            )

        await proxy.start()
        # the listener reconnects and reloads in full
        await eventually(lambda: holder.widget("added-in-outage") == spec("Missed"), 15)
        assert holder.listening
    finally:
        await holder.stop()
        await gw.close()


# ------------------------------------------------------------------------------ read-your-writes


class GatedStore(RegistryStore):
    """A real store whose next snapshot read, once `arm()`ed, is held back after it was read
    (so it predates anything committed meanwhile) until `release` is set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._armed = False
        self.read_done = asyncio.Event()
        self.release = asyncio.Event()

    def arm(self) -> None:
        self._armed = True
        self.read_done.clear()
        self.release.clear()

    async def _read(
        self,
        conn: psycopg.AsyncConnection[Any],
        routing_file: tuple[dict[str, RoutingEntry], list[str]],
    ) -> RegistrySnapshot:
        snap = await super()._read(conn, routing_file)
        await self._gate()
        return snap

    async def read_widgets(self, *args: Any, **kwargs: Any) -> Any:
        widgets = await super().read_widgets(*args, **kwargs)
        await self._gate()
        return widgets

    async def _gate(self) -> None:
        if self._armed:
            self._armed = False
            self.read_done.set()
            await self.release.wait()


@pytest.fixture
async def gated(db_url: str) -> AsyncIterator[GatedStore]:
    gw = PgGateway(db_url)
    await gw.open()
    yield GatedStore(gw.pool, ROUTING)
    await gw.close()


async def _stale_reload(holder: RegistryHolder, path: str, db_url: str) -> asyncio.Task[Any]:
    """Start a reload the way `path` does it: the listener's (over its own connection; in
    full, or of the one widget a notification named) or `refresh()` (over the pool)."""
    if path == "refresh":
        return asyncio.create_task(holder.refresh())
    conn = await psycopg.AsyncConnection.connect(db_url, autocommit=True)
    widget_ids = frozenset({"race-tile"}) if path == "listener-widget" else None

    async def listener_reload() -> None:
        async with conn:
            await holder._reload(conn, widget_ids)

    return asyncio.create_task(listener_reload())


@pytest.mark.parametrize("path", ["listener", "listener-widget", "refresh"])
@pytest.mark.parametrize("write", ["create", "replace", "delete"])
async def test_stale_reload_never_undoes_a_local_write(
    gated: GatedStore, db_url: str, path: str, write: str
) -> None:
    holder = await RegistryHolder.create(gated)
    if write != "create":
        await holder.put_widget("race-tile", spec("Old"))
    gated.arm()
    reload = await _stale_reload(holder, path, db_url)
    await gated.read_done.wait()  # the reload now holds a snapshot from before the write
    if write == "delete":
        assert await holder.delete_widget("race-tile") is True
        expected = None
    else:
        assert await holder.put_widget("race-tile", spec("New")) is (write == "create")
        expected = spec("New")
    assert holder.widget("race-tile") == expected
    gated.release.set()
    await reload
    assert holder.widget("race-tile") == expected  # the stale result was not installed
    assert holder.stale_loads == 1  # it was dropped and loaded again
    assert holder.current == holder.snapshot
    assert holder.version == (await gated.load()).version  # and it matches PostgreSQL


class OvertakenStore(RegistryStore):
    """A real store each of whose first `overtakes` snapshot reads is overtaken by a local
    write of the holder's: started after the read, installed before the read is checked
    (unless the holder makes it wait for the reload)."""

    holder: RegistryHolder
    overtakes = 0
    reads = 0

    async def _read(self, conn: Any, routing: Any) -> RegistrySnapshot:
        snap = await super()._read(conn, routing)
        self.reads += 1
        if self.reads <= self.overtakes:
            write = asyncio.create_task(self.holder.put_widget("busy-tile", spec(f"W{self.reads}")))
            lock = getattr(self.holder, "_write_lock", None)  # held: the write waits for us
            await until(lambda: write.done() or (lock is not None and lock.locked()))
        return snap


async def test_a_reload_overtaken_by_writes_settles_on_its_second_read(db_url: str) -> None:
    """A reload that every write overtakes is not retried while writes keep coming (that
    starved a listener for as long as another task wrote): its second read holds the
    write lock, so it is the latest and is installed."""
    gw = PgGateway(db_url)
    await gw.open()
    try:
        store = OvertakenStore(gw.pool, ROUTING)
        holder = store.holder = await RegistryHolder.create(store)
        store.overtakes, store.reads = 20, 0
        await holder.refresh()
        assert store.reads == 2 and holder.stale_loads == 1
        await until(lambda: holder.widget("busy-tile") == spec("W2"))  # it waited for us
        assert holder.version == (await RegistryStore(gw.pool, ROUTING).load()).version
    finally:
        await gw.close()


async def test_older_of_two_overlapping_reloads_never_wins(gated: GatedStore, db_url: str) -> None:
    holder = await RegistryHolder.create(gated)
    gated.arm()
    first = await _stale_reload(holder, "listener", db_url)
    await gated.read_done.wait()
    with psycopg.connect(db_url, autocommit=True) as conn:  # another instance's write
        conn.execute(
            "INSERT INTO widgets (id, spec) VALUES ('remote-tile', %s)",
            (Jsonb(spec("Remote").model_dump(mode="json")),),
        )
    await holder.refresh()  # a second reload, started later, sees it
    assert holder.widget("remote-tile") == spec("Remote")
    gated.release.set()
    await first
    assert holder.widget("remote-tile") == spec("Remote")
    assert holder.stale_loads == 1


async def test_every_read_sees_the_write_with_listeners_running(
    store: RegistryStore, db_url: str
) -> None:
    """Local writes, another instance's writes and both listeners' reloads interleave
    without pause: every read on this instance sees its own last write, each listener
    settles (a reload challenged by writes reads at most twice, never starves), and the
    holders stop (a stop repeats a cancellation the event loop swallowed)."""
    other_gw = PgGateway(db_url)
    await other_gw.open()
    holder = await RegistryHolder.create(store)
    other = await RegistryHolder.create(RegistryStore(other_gw.pool, ROUTING))
    await holder.start()
    await other.start()
    stop = asyncio.Event()
    last: list[WidgetSpec] = []

    async def remote_churn() -> None:  # another instance writing: more notifications
        n = 0
        while not stop.is_set():
            n += 1
            last[:] = [spec(f"Churn {n}")]
            await other.put_widget("churn-tile", last[0])
            await asyncio.sleep(0)

    churn = asyncio.create_task(remote_churn())
    stale: list[str] = []
    try:
        # the first full reload completes while the other instance keeps writing
        await holder.wait_listening(60)
        await other.wait_listening(60)
        for i in range(100):
            want = spec(f"Cycle {i}")
            await holder.put_widget("cycle-tile", want)
            for pause in (0, 0.002, 0.01):  # a later request on this instance
                await asyncio.sleep(pause)
                if holder.widget("cycle-tile") != want:
                    stale.append(f"cycle {i}: put not visible after {pause}s")
            await holder.delete_widget("cycle-tile")
            for pause in (0, 0.002, 0.01):
                await asyncio.sleep(pause)
                if holder.widget("cycle-tile") is not None:
                    stale.append(f"cycle {i}: delete undone after {pause}s")
        await eventually(lambda: holder.reloads > 1, 60)  # the listener was reloading
        stop.set()
        await churn
        # this instance's listener applies the other's last write
        await eventually(lambda: holder.widget("churn-tile") == last[0], 60)
    finally:
        stop.set()
        await churn
        await holder.stop()
        await other.stop()
        await other_gw.close()
    assert stale == []
