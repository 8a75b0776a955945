"""Migrations and seed data, on the real PostgreSQL server (a fresh database per test)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import yaml

from adapters.pg_migrate import load_migrations, migrate
from adapters.pg_seed import (
    PROFILES,
    align_down,
    history_window,
    load_catalog,
    load_widgets,
    seed,
)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
NOW = datetime(2026, 3, 15, 12, 7, 30, tzinfo=UTC)


def _scalar(url: str, query: str, params: tuple[object, ...] = ()) -> object:
    with psycopg.connect(url) as conn:
        row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
        assert row is not None
        return row[0]


# ------------------------------------------------------------------------------ migrations


async def test_migrate_applies_once_and_is_idempotent(fresh_pg_url: str) -> None:
    versions = [m.version for m in load_migrations()]
    assert versions and versions[0] == "0001_init"

    assert await migrate(fresh_pg_url) == versions
    assert await migrate(fresh_pg_url) == []

    with psycopg.connect(fresh_pg_url) as conn:
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        }
        recorded = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert {
        "schema_migrations",
        "metrics_catalog",
        "kpi_metrics_history",
        "widgets",
        "sql_generation_log",
    } <= tables
    assert "metric_routing" not in tables
    assert recorded == versions


async def test_concurrent_migrations_apply_each_version_once(fresh_pg_url: str) -> None:
    results = await asyncio.gather(*(migrate(fresh_pg_url) for _ in range(3)))
    applied = [v for r in results for v in r]
    assert sorted(applied) == [m.version for m in load_migrations()]


async def test_bad_migration_file_name_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "init.sql").write_text("SELECT 1")
    with pytest.raises(ValueError, match=r"init\.sql"):
        load_migrations(tmp_path)


async def test_triggers_notify_registry_channel(fresh_pg_url: str) -> None:
    await migrate(fresh_pg_url)
    with psycopg.connect(fresh_pg_url, autocommit=True) as listener:
        listener.execute("LISTEN resolver_registry")
        with psycopg.connect(fresh_pg_url, autocommit=True) as conn:
            conn.execute("INSERT INTO widgets (id, spec) VALUES ('w1', '{}')")
            conn.execute("UPDATE widgets SET spec = '{\"a\": 1}' WHERE id = 'w1'")
            conn.execute("DELETE FROM widgets WHERE id = 'w1'")
            conn.execute(
                "INSERT INTO metrics_catalog (name, definition) VALUES ('m1', '{\"table\": \"t\"}')"
            )
        payloads = [n.payload for n in listener.notifies(timeout=2.0, stop_after=4)]
    # Identical payloads of one transaction would be merged; these are separate transactions.
    assert payloads == ["widgets:w1", "widgets:w1", "widgets:w1", "metrics_catalog:m1"]


# ------------------------------------------------------------------------------ seed


def test_history_window_tops_up_from_last_point() -> None:
    step = timedelta(minutes=15)
    start, end = history_window(None, NOW, step, 90) or (None, None)
    assert start == align_down(NOW - timedelta(days=90), step)
    assert end == NOW
    last = datetime(2026, 3, 15, 11, 45, tzinfo=UTC)
    assert history_window(last, NOW, step, 90) == (last + step, NOW)
    assert history_window(datetime(2026, 3, 15, 12, 0, tzinfo=UTC), NOW, step, 90) is None
    # a long-stale database restarts at the history horizon instead of back-filling months
    stale = NOW - timedelta(days=400)
    assert history_window(stale, NOW, step, 90) == (align_down(NOW - timedelta(days=90), step), NOW)


async def test_seed_counts_and_idempotence(fresh_pg_url: str) -> None:
    await migrate(fresh_pg_url)
    catalog = load_catalog(CONFIG_DIR / "metrics.yaml")
    widgets = load_widgets(CONFIG_DIR / "widgets.yaml")
    history_metrics = {m for m, d in catalog.items() if d.definition.table == "kpi_metrics_history"}

    first = await seed(fresh_pg_url, CONFIG_DIR, now=NOW)
    assert first.metrics_upserted == len(catalog)
    assert first.widgets_inserted == len(widgets)
    assert set(first.history_rows) == history_metrics
    assert all(n > 0 for n in first.history_rows.values())
    assert 50_000 < first.history_total < 150_000

    with psycopg.connect(fresh_pg_url) as conn:
        stats = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT metric_name, min(recorded_at), max(recorded_at), count(*),"
                " count(DISTINCT (recorded_at, dimensions)), count(*) FILTER (WHERE value IS NULL)"
                " FROM kpi_metrics_history GROUP BY 1"
            )
        }
    assert set(stats) == history_metrics
    for name, (lo, hi, n, distinct, nulls) in stats.items():
        step = PROFILES[name].step
        assert lo <= NOW - timedelta(days=90) + step, name  # >= 90 days of history
        assert NOW - step < hi <= NOW, name  # fresh up to `now`
        assert n == distinct == first.history_rows[name], name
        assert nulls == 0

    # every dimension key of the metric is present on every row, with the demo values
    assert (
        _scalar(
            fresh_pg_url,
            "SELECT count(*) FROM kpi_metrics_history WHERE metric_name = 'active_issues_count'"
            " AND NOT (dimensions ? 'team' AND dimensions ? 'severity')",
        )
        == 0
    )
    with psycopg.connect(fresh_pg_url) as conn:
        regions = conn.execute(
            "SELECT DISTINCT dimensions->>'region' FROM kpi_metrics_history"
            " WHERE metric_name = 'claims_in_progress_count' ORDER BY 1"
        ).fetchall()
    assert [r[0] for r in regions] == ["midwest", "northeast", "southeast", "southwest", "west"]
    # percentages stay percentages
    assert (
        _scalar(
            fresh_pg_url,
            "SELECT count(*) FROM kpi_metrics_history WHERE metric_name = 'nba_taken_pct'"
            " AND NOT value BETWEEN 0 AND 100",
        )
        == 0
    )

    again = await seed(fresh_pg_url, CONFIG_DIR, now=NOW)
    assert again.metrics_upserted == 0
    assert again.widgets_inserted == 0 and again.widgets_skipped == len(widgets)
    assert again.history_total == 0
    assert _scalar(fresh_pg_url, "SELECT count(*) FROM kpi_metrics_history") == first.history_total


async def test_seed_tops_up_a_later_day_without_duplicates(fresh_pg_url: str) -> None:
    await migrate(fresh_pg_url)
    first = await seed(fresh_pg_url, CONFIG_DIR, now=NOW)
    later = NOW + timedelta(days=1)
    topped = await seed(fresh_pg_url, CONFIG_DIR, now=later)
    # one day more of each series: 15-minute metric x 4 services, hourly x series, daily x 5
    assert topped.history_rows["critical_alerts_count_15min"] == 96 * 4
    assert topped.history_rows["claims_in_progress_count"] == 24 * 5
    assert topped.history_rows["active_issues_count"] == 24 * 16
    assert topped.history_rows["cost_avoided_mtd"] == 5
    with psycopg.connect(fresh_pg_url) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT (metric_name, recorded_at, dimensions)),"
            " max(recorded_at) FROM kpi_metrics_history"
        ).fetchone()
    assert row is not None
    assert row[0] == row[1] == first.history_total + topped.history_total
    assert later - timedelta(minutes=15) < row[2] <= later


async def test_seed_keeps_user_edits_and_restores_catalog(fresh_pg_url: str) -> None:
    await migrate(fresh_pg_url)
    await seed(fresh_pg_url, CONFIG_DIR, now=NOW)
    with psycopg.connect(fresh_pg_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE widgets SET spec = jsonb_set(spec::jsonb, '{title}', '\"Edited\"')::json"
            " WHERE id = 'open-issues-kpi'"
        )
        conn.execute("DELETE FROM widgets WHERE id = 'cost-avoided-mtd'")
        conn.execute(
            "UPDATE metrics_catalog SET description = 'tampered' WHERE name = 'nba_taken_pct'"
        )
    report = await seed(fresh_pg_url, CONFIG_DIR, now=NOW)
    assert report.widgets_inserted == 1  # the deleted demo widget comes back
    assert report.metrics_upserted == 1  # only the changed catalog row is rewritten
    assert (
        _scalar(fresh_pg_url, "SELECT spec->>'title' FROM widgets WHERE id = 'open-issues-kpi'")
        == "Edited"
    )
    assert (
        _scalar(
            fresh_pg_url, "SELECT description FROM metrics_catalog WHERE name = 'nba_taken_pct'"
        )
        == load_catalog(CONFIG_DIR / "metrics.yaml")["nba_taken_pct"].description
    )


async def test_seed_rejects_a_widget_on_an_unknown_metric(
    fresh_pg_url: str, tmp_path: Path
) -> None:
    await migrate(fresh_pg_url)
    (tmp_path / "metrics.yaml").write_text((CONFIG_DIR / "metrics.yaml").read_text())
    (tmp_path / "metric_routing.yaml").write_text((CONFIG_DIR / "metric_routing.yaml").read_text())
    (tmp_path / "widgets.yaml").write_text(
        yaml.safe_dump(
            {
                "widgets": {
                    "ghost-widget": {
                        "title": "Ghost",
                        "kind": "kpi",
                        "data_intent": {"metric_id": "no_such_metric"},
                        "mock_data": [{"value": 1}],
                    }
                }
            }
        )
    )
    with pytest.raises(ValueError, match=r"ghost-widget.*no_such_metric"):
        await seed(fresh_pg_url, tmp_path, now=NOW)
    assert _scalar(fresh_pg_url, "SELECT count(*) FROM widgets") == 0


def test_config_loaders_name_the_bad_entry(tmp_path: Path) -> None:
    bad_metrics = tmp_path / "metrics.yaml"
    bad_metrics.write_text(yaml.safe_dump({"metrics": [{"name": "broken_metric", "unit": "x"}]}))
    with pytest.raises(ValueError, match="broken_metric"):
        load_catalog(bad_metrics)
    bad_widgets = tmp_path / "widgets.yaml"
    bad_widgets.write_text(
        yaml.safe_dump({"widgets": {"bad-kind": {"title": "t", "kind": "donut"}}})
    )
    with pytest.raises(ValueError, match="bad-kind"):
        load_widgets(bad_widgets)
