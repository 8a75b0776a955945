"""The embedded PostgreSQL (pgserver): start, migrate, seed, query, restart with data kept."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from adapters.embedded_pg import start_embedded_postgres, stop_embedded_postgres
from adapters.pg_migrate import load_migrations, migrate
from adapters.pg_seed import load_catalog, load_widgets, seed
from adapters.postgres import PgGateway

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


@pytest.fixture
def data_dir(embedded_tmp: Path) -> Iterator[Path]:
    path = embedded_tmp / "pg"
    yield path
    stop_embedded_postgres(path)


async def test_embedded_pg_start_migrate_seed_query_restart(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    uri = start_embedded_postgres(data_dir)
    # a cold start says one thing at INFO, not initdb's and pg_ctl's whole output
    assert [r.name for r in caplog.records if r.name == "pgserver"] == [], caplog.text[:2000]
    assert "first start: creating the embedded PostgreSQL" in caplog.text
    assert uri.startswith("postgresql://") and "/resolver" in uri
    assert (data_dir / "PG_VERSION").read_text().strip() == "16"

    assert await migrate(uri) == [m.version for m in load_migrations()]
    report = await seed(uri, CONFIG_DIR, history_days=2)
    assert report.widgets_inserted == len(load_widgets(CONFIG_DIR / "widgets.yaml"))

    gw = PgGateway(uri)
    await gw.open()
    try:
        widgets = load_widgets(CONFIG_DIR / "widgets.yaml")
        catalog = load_catalog(CONFIG_DIR / "metrics.yaml")
        di = widgets["issues-by-severity"].data_intent
        result = await gw.run_metric(catalog[di.metric_id], di, now=time.time())
        assert {r["severity"] for r in result.rows} == {"critical", "high", "medium", "low"}
    finally:
        await gw.close()

    # stopped and started again: same data, same database
    stop_embedded_postgres(data_dir)
    uri_again = start_embedded_postgres(data_dir)
    assert await migrate(uri_again) == []
    with psycopg.connect(uri_again) as conn:
        row = conn.execute("SELECT count(*) FROM kpi_metrics_history").fetchone()
    assert row == (report.history_total,)
