"""Seeding changes data only when asked (issue 18), and widgets.yaml is checked as a PUT is.

A boot never seeds a DATABASE_URL database unless SEED_DEMO says so; a boot seed (the
embedded default, or SEED_DEMO=true) inserts the demo widgets only into a database never
seeded, so a deleted widget stays deleted; `resolver seed` seeds on request, audited.
Real PostgreSQL, a fresh database per test.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import yaml

from adapters.pg_migrate import migrate
from adapters.pg_seed import load_widgets, seed
from service.settings import Settings
from service.wiring import BootError
from tests.support.servers import copy_config, running_service

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
DEMO = load_widgets(CONFIG_DIR / "widgets.yaml")
NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
GONE = "issues-by-severity"


def _scalar(url: str, query: str, params: tuple[object, ...] = ()) -> object:
    with psycopg.connect(url) as conn:
        row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
        assert row is not None
        return row[0]


def _audit(url: str, widget_id: str) -> list[tuple[str, str, str | None, str | None]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT subject, action, before_hash, after_hash FROM audit_log"
            " WHERE widget_id = %s ORDER BY id",
            (widget_id,),
        ).fetchall()


def test_only_the_embedded_database_is_seeded_at_boot_unless_seed_demo_says() -> None:
    assert Settings(database_url=None, seed_demo=None).seed_at_boot is True  # embedded demo
    assert (
        Settings(database_url="postgresql://db.example/app", seed_demo=None).seed_at_boot is False
    )
    assert Settings(database_url="postgresql://db.example/app", seed_demo=True).seed_at_boot
    assert Settings(database_url=None, seed_demo=False).seed_at_boot is False


async def test_a_restart_never_reseeds_a_database_url_database(
    fresh_pg_url: str, tmp_path: Path
) -> None:
    await migrate(fresh_pg_url)
    await seed(fresh_pg_url, CONFIG_DIR, now=NOW, history_days=2)  # `resolver seed`, once
    history = _scalar(fresh_pg_url, "SELECT count(*) FROM kpi_metrics_history")

    # seed_demo=None: what a plain `resolver serve` with DATABASE_URL does
    async with running_service(database_url=fresh_pg_url, data_dir=tmp_path, seed_demo=None) as s:
        assert (await s.client.delete(f"/v1/widgets/{GONE}")).status_code == 204
    async with running_service(database_url=fresh_pg_url, data_dir=tmp_path, seed_demo=None) as s:
        assert (await s.client.get(f"/v1/widgets/{GONE}")).status_code == 404  # stays deleted
        assert s.res.registry.widget(GONE) is None
    assert _scalar(fresh_pg_url, "SELECT count(*) FROM kpi_metrics_history") == history
    assert [a[1] for a in _audit(fresh_pg_url, GONE)] == ["widget.create", "widget.delete"]

    # SEED_DEMO=true at boot: catalog and history, but never a demo widget somebody deleted
    async with running_service(database_url=fresh_pg_url, data_dir=tmp_path, seed_demo=True) as s:
        assert s.res.registry.widget(GONE) is None
        assert len(s.res.registry.widgets()) == len(DEMO) - 1
    assert [a[1] for a in _audit(fresh_pg_url, GONE)] == ["widget.create", "widget.delete"]

    # asked for by command: the demo widget comes back, and the audit log says who did it
    report = await seed(fresh_pg_url, CONFIG_DIR, now=NOW, history_days=2, trigger="command")
    assert report.widgets_inserted == 1
    log = _audit(fresh_pg_url, GONE)
    assert log[-1][:3] == ("resolver seed", "widget.create", None)
    assert log[-1][3] == log[0][3]  # the same demo spec as the first time


async def test_a_boot_seed_inserts_the_demo_widgets_into_a_fresh_database_only(
    fresh_pg_url: str,
) -> None:
    await migrate(fresh_pg_url)
    first = await seed(fresh_pg_url, CONFIG_DIR, now=NOW, history_days=1, trigger="boot")
    assert first.widgets_inserted == len(DEMO) and first.history_total > 0
    assert {a[0] for a in _audit(fresh_pg_url, GONE)} == {"resolver seed"}
    with psycopg.connect(fresh_pg_url, autocommit=True) as conn:
        conn.execute("DELETE FROM widgets WHERE id = %s", (GONE,))
    again = await seed(fresh_pg_url, CONFIG_DIR, now=NOW, history_days=1, trigger="boot")
    assert again.widgets_inserted == 0 and again.history_total == 0  # nothing new to add
    assert _scalar(fresh_pg_url, "SELECT count(*) FROM widgets WHERE id = %s", (GONE,)) == 0
    assert _scalar(fresh_pg_url, "SELECT count(*) FROM seed_runs") == 2


async def test_a_database_in_use_before_the_seed_log_counts_as_seeded(
    fresh_pg_url: str,
) -> None:
    """Migration 0030 marks a database that already holds widgets as seeded, so upgrading
    never brings back the demo widgets deleted before the upgrade."""
    await migrate(fresh_pg_url)
    with psycopg.connect(fresh_pg_url, autocommit=True) as conn:
        conn.execute("DELETE FROM schema_migrations WHERE version LIKE '0030%'")
        conn.execute("DROP TABLE seed_runs")
        conn.execute(
            "INSERT INTO widgets (id, spec) VALUES ('kept', %s::json)",
            (DEMO["open-issues-kpi"].model_dump_json(),),
        )
    await migrate(fresh_pg_url)  # applies 0030 to a database in use
    report = await seed(fresh_pg_url, CONFIG_DIR, now=NOW, history_days=1, trigger="boot")
    assert report.widgets_inserted == 0


def _with_widget(tmp_path: Path, widget_id: str, intent: dict[str, object]) -> Path:
    cfg = copy_config(tmp_path)
    doc = yaml.safe_load((cfg / "widgets.yaml").read_text())
    doc["widgets"][widget_id] = {
        "title": "Odd",
        "kind": "kpi",
        "data_intent": intent,
        "mock_data": [{"value": 1}],
    }
    (cfg / "widgets.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return cfg


async def test_widgets_yaml_is_refused_at_boot_for_what_put_refuses(
    fresh_pg_url: str, tmp_path: Path
) -> None:
    intent: dict[str, object] = {"metric_id": "nba_taken_pct", "question": "Which channel is best?"}
    cfg = _with_widget(tmp_path, "pg-question", intent)
    with pytest.raises(BootError) as err:
        async with running_service(database_url=fresh_pg_url, config_dir=cfg, data_dir=tmp_path):
            pass
    text = str(err.value)
    assert "'pg-question'" in text and "a question needs a warehouse metric" in text
    assert _scalar(fresh_pg_url, "SELECT count(*) FROM widgets") == 0  # nothing half-seeded

    # the same widget through PUT: the same words
    async with running_service(database_url=fresh_pg_url, data_dir=tmp_path, seed_demo=True) as s:
        spec = yaml.safe_load((cfg / "widgets.yaml").read_text())["widgets"]["pg-question"]
        r = await s.client.put("/v1/widgets/pg-question", json=spec)
        assert r.status_code == 422
        assert "a question needs a warehouse metric" in r.json()["detail"]


async def test_an_llm_generator_on_a_postgres_metric_is_refused_at_boot(
    fresh_pg_url: str, tmp_path: Path
) -> None:
    cfg = copy_config(tmp_path)
    routing = yaml.safe_load((cfg / "metric_routing.yaml").read_text())
    routing["metrics"]["nba_taken_pct"]["generator"] = "llm"
    (cfg / "metric_routing.yaml").write_text(yaml.safe_dump(routing))
    with pytest.raises(BootError) as err:
        async with running_service(database_url=fresh_pg_url, config_dir=cfg, data_dir=tmp_path):
            pass
    text = str(err.value)
    assert "'nba-taken-by-channel'" in text  # the widgets.yaml widget on that metric
    assert "'nba_taken_pct' is routed to postgres with generator llm" in text


def test_boot_validation_names_an_llm_generator_on_a_postgres_metric_without_widgets() -> None:
    from adapters.pg_seed import load_catalog
    from adapters.registry import RegistrySnapshot, validate_boot
    from domain.config import read_routing

    routing, _ = read_routing(CONFIG_DIR / "metric_routing.yaml")
    routing["nba_taken_pct"] = routing["nba_taken_pct"].model_copy(update={"generator": "llm"})
    snap = RegistrySnapshot.build({}, load_catalog(CONFIG_DIR / "metrics.yaml"), routing)
    assert validate_boot(snap) == [
        "metric 'nba_taken_pct' is routed to postgres with generator llm: only warehouse "
        "(databricks) metrics can be generated by the model"
    ]


async def test_a_fresh_database_url_database_boots_only_after_a_seed(
    fresh_pg_url: str, tmp_path: Path
) -> None:
    """Tried as a new user would: the boot says what to run, once, not per metric."""
    with pytest.raises(BootError) as err:
        async with running_service(database_url=fresh_pg_url, data_dir=tmp_path, seed_demo=None):
            pass
    text = str(err.value)
    assert "metric catalog (metrics_catalog) is empty" in text and "`resolver seed`" in text
    assert "is not in the catalog" not in text
    assert _scalar(fresh_pg_url, "SELECT count(*) FROM widgets") == 0
    assert _scalar(fresh_pg_url, "SELECT count(*) FROM kpi_metrics_history") == 0
