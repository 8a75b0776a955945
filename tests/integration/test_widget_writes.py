"""Widget writes under contention and per-tenant limits (issue 18), on the real PostgreSQL.

- Concurrent writes of one widget id from several instances keep the audit hash chain
  whole: every row's before_hash is the previous row's after_hash.
- A tenant's limits (widget count, spec size, mock_data size) are problems: 409, 413, 422.
- One tenant's widgets cost nothing when another tenant writes: only the changed widget is
  hashed, locally and on the instances that learn of it by NOTIFY.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from adapters.pg_migrate import migrate
from adapters.pg_seed import load_widgets, seed
from adapters.postgres import PgGateway
from adapters.registry import (
    AuditEntry,
    RegistryHolder,
    RegistryStore,
    WidgetLimitExceeded,
    WidgetLimits,
)
from domain.models import DataIntent, WidgetSpec
from tests.support.servers import running_service

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
ROUTING = CONFIG_DIR / "metric_routing.yaml"
DEMO = load_widgets(CONFIG_DIR / "widgets.yaml")


def spec(title: str, rows: int = 1, pad: str = "") -> WidgetSpec:
    return WidgetSpec(
        title=title,
        kind="kpi",
        data_intent=DataIntent(metric_id="nba_taken_pct"),
        mock_data=[{"value": i, "note": pad} for i in range(rows)],
    )


@pytest.fixture
def db_url(fresh_pg_url: str) -> str:
    asyncio.run(migrate(fresh_pg_url))
    asyncio.run(seed(fresh_pg_url, CONFIG_DIR, history_days=1))
    return fresh_pg_url


@pytest.fixture
async def instances(db_url: str) -> AsyncIterator[list[RegistryHolder]]:
    """Three instances: each its own pool, store and holder (not listening)."""
    gateways = [PgGateway(db_url) for _ in range(3)]
    for gw in gateways:
        await gw.open()
    try:
        yield [await RegistryHolder.create(RegistryStore(gw.pool, ROUTING)) for gw in gateways]
    finally:
        for gw in gateways:
            await gw.close()


def audit_rows(url: str, widget_id: str) -> list[tuple[str, str | None, str | None]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT action, before_hash, after_hash FROM audit_log"
            " WHERE tenant = 'race' AND widget_id = %s ORDER BY id",
            (widget_id,),
        ).fetchall()


async def test_concurrent_creates_keep_the_audit_chain_whole(
    instances: list[RegistryHolder], db_url: str
) -> None:
    who = AuditEntry("race", "racer")
    rounds, writers = 6, 12
    for n in range(rounds):
        wid = f"race-{n}"
        writes = [
            instances[i % len(instances)].put_widget(
                wid, spec(f"Writer {i}"), tenant="race", who=who
            )
            for i in range(writers)
        ]
        deletes = [
            instances[i % len(instances)].delete_widget(wid, tenant="race", who=who)
            for i in range(3)
        ]
        outcomes = await asyncio.gather(*writes, *deletes)
        rows = audit_rows(db_url, wid)
        assert len(rows) == writers + sum(1 for d in outcomes[writers:] if d)
        previous: str | None = None
        for action, before, after in rows:
            assert before == previous, f"{wid}: a broken chain in {rows}"
            expected = (
                "widget.delete"
                if after is None
                else ("widget.create" if before is None else "widget.replace")
            )
            assert action == expected, f"{wid}: {action} with before={before} after={after}"
            previous = after
        created = sum(1 for created in outcomes[:writers] if created is True)
        assert created == sum(1 for a, _, _ in rows if a == "widget.create")


async def test_an_instances_concurrent_writes_install_in_commit_order(
    instances: list[RegistryHolder],
) -> None:
    holder = instances[0]
    for n in range(4):
        wid = f"order-{n}"
        await asyncio.gather(
            *(holder.put_widget(wid, spec(f"Write {i}"), tenant="order") for i in range(12))
        )
        stored = (await holder.store.read_widgets([wid]))[("order", wid)][0]
        assert holder.widget(wid, "order") == stored  # the last commit is what it serves


async def test_concurrent_creates_never_pass_the_tenants_widget_count(
    instances: list[RegistryHolder], db_url: str
) -> None:
    limits = WidgetLimits(max_per_tenant=5)
    for holder in instances:
        holder.limits = limits
    results = await asyncio.gather(
        *(
            instances[i % len(instances)].put_widget(f"w-{i}", spec(f"W {i}"), tenant="capped")
            for i in range(24)
        ),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, WidgetLimitExceeded)]
    assert sum(1 for r in results if r is True) == 5 and len(refused) == 19, results
    assert {r.limit for r in refused} == {"widget_count"}
    with psycopg.connect(db_url) as conn:
        count = conn.execute("SELECT count(*) FROM widgets WHERE tenant = 'capped'").fetchone()
    assert count == (5,)
    kept = next(f"w-{i}" for i, r in enumerate(results) if r is True)
    # a replace at the limit is no new widget
    assert await instances[0].put_widget(kept, spec("Again"), tenant="capped") is False


async def test_each_limit_is_its_own_problem(fresh_pg_url: str, tmp_path: Path) -> None:
    async with running_service(
        database_url=fresh_pg_url,
        data_dir=tmp_path,
        widget_max_per_tenant=len(DEMO) + 1,  # room for one more beside the demo widgets
        widget_spec_max_bytes=8192,
        widget_mock_data_max_bytes=2048,
    ) as s:
        assert len(s.res.registry.widgets()) == len(DEMO)
        body = spec("Small").model_dump(mode="json")
        over_mock = body | {"mock_data": [{"value": i, "note": "z" * 100} for i in range(30)]}
        r = await s.client.put("/v1/widgets/big-mock", json=over_mock)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["limit"] == "mock_data_bytes" and "WIDGET_MOCK_DATA_MAX_BYTES" in r.text
        assert s.res.registry.widget("big-mock") is None

        assert (await s.client.put("/v1/widgets/last-one", json=body)).status_code == 201
        r = await s.client.put("/v1/widgets/one-too-many", json=body)
        assert r.status_code == 409, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["limit"] == "widget_count" and "WIDGET_MAX_PER_TENANT" in r.text
        assert s.res.registry.widget("one-too-many") is None
        # replacing one it holds is fine; deleting one makes room
        assert (await s.client.put("/v1/widgets/last-one", json=body)).status_code == 200
        assert (await s.client.delete("/v1/widgets/last-one")).status_code == 204
        assert (await s.client.put("/v1/widgets/one-too-many", json=body)).status_code == 201
        with psycopg.connect(fresh_pg_url) as conn:  # nothing refused was stored or audited
            ids = {r[0] for r in conn.execute("SELECT widget_id FROM audit_log")}
        assert "big-mock" not in ids and ids >= {"last-one", "one-too-many"}


async def test_a_spec_over_its_limit_is_a_413(fresh_pg_url: str, tmp_path: Path) -> None:
    async with running_service(
        database_url=fresh_pg_url,
        data_dir=tmp_path,
        widget_spec_max_bytes=4096,
        widget_mock_data_max_bytes=100_000,
    ) as s:
        body = spec("Wide", rows=60, pad="p" * 60).model_dump(mode="json")
        r = await s.client.put("/v1/widgets/wide", json=body)
        assert r.status_code == 413, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["limit"] == "spec_bytes" and "WIDGET_SPEC_MAX_BYTES" in r.text
        assert s.res.registry.widget("wide") is None


class DumpCounter:
    """Counts `model_dump` calls on specs whose title starts with `prefix`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
        self.calls = 0
        original: Callable[..., Any] = WidgetSpec.model_dump
        counter = self

        def counting(self: WidgetSpec, *args: Any, **kwargs: Any) -> Any:
            if self.title.startswith(prefix):
                counter.calls += 1
            return original(self, *args, **kwargs)

        monkeypatch.setattr(WidgetSpec, "model_dump", counting)


async def test_another_tenants_widgets_are_not_rehashed_on_a_write(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    applied: dict[int, asyncio.Event] = {}  # per holder: set after each listener change
    original = RegistryHolder._reload

    async def reload_and_tell(self: RegistryHolder, *args: Any) -> None:
        await original(self, *args)
        applied.setdefault(id(self), asyncio.Event()).set()

    monkeypatch.setattr(RegistryHolder, "_reload", reload_and_tell)
    gw_a, gw_b = PgGateway(db_url), PgGateway(db_url)
    await gw_a.open()
    await gw_b.open()
    writer = await RegistryHolder.create(RegistryStore(gw_a.pool, ROUTING))
    watcher = await RegistryHolder.create(RegistryStore(gw_b.pool, ROUTING))
    try:
        for i in range(40):  # a tenant with many large widgets
            await writer.put_widget(f"big-{i}", spec(f"Big {i}", rows=200), tenant="heavy")
        await writer.start()
        await watcher.start()
        await writer.wait_listening(10)
        await watcher.wait_listening(10)
        await watcher.refresh()
        assert len(watcher.widgets("heavy")) == 40
        counter = DumpCounter(monkeypatch, "Big")
        for holder in (writer, watcher):
            applied.setdefault(id(holder), asyncio.Event()).clear()
        await writer.put_widget("small", spec("Light"), tenant="light")
        assert writer.widget("small", "light") == spec("Light")  # at once, locally
        for holder in (writer, watcher):  # each learns of the write by NOTIFY
            await asyncio.wait_for(applied[id(holder)].wait(), 30)
        assert watcher.widget("small", "light") == spec("Light")
        assert counter.calls == 0  # no widget of the heavy tenant was dumped or hashed
        assert watcher.version == writer.version == (await watcher.store.load()).version
        assert watcher.full_reloads == writer.full_reloads == 1  # the connect, not the write
    finally:
        await writer.stop()
        await watcher.stop()
        await gw_a.close()
        await gw_b.close()
