"""The `resolver` console script installed beside the running interpreter, as a user runs it."""

from __future__ import annotations

import json
import subprocess

import psycopg
import pytest

from tests.support.servers import create_database, drop_database, entry_point

RESOLVER = entry_point("resolver")


def check_sql(sql: str, *args: str) -> tuple[int, dict]:
    proc = subprocess.run(
        [RESOLVER, "check-sql", *args], input=sql, capture_output=True, text=True, timeout=60
    )
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else {}


@pytest.mark.parametrize(
    "sql, dialect, allowed",
    [
        ("SELECT 1; DROP TABLE main.claims.devices", "databricks", False),
        (
            "WITH d AS (DELETE FROM kpi_metrics_history RETURNING *) SELECT * FROM d",
            "postgres",
            False,
        ),
        (
            "SELECT region, count(*) AS value FROM main.claims.claim_events "
            "WHERE event_ts >= TIMESTAMP '2026-01-01 00:00:00' GROUP BY region",
            "databricks",
            True,
        ),
    ],
)
def test_check_sql_verdicts(sql: str, dialect: str, allowed: bool) -> None:
    code, out = check_sql(sql, "--dialect", dialect)
    assert out["allowed"] is allowed and code == (0 if allowed else 1)
    if allowed:
        assert out["sql"].endswith("LIMIT 10000") and out["rule"] is None
    else:
        assert out["rule"] and out["reason"] and out["sql"] is None


def test_check_sql_usage_error_exits_2() -> None:
    proc = subprocess.run(
        [RESOLVER, "check-sql", "--dialect", "oracle"],
        input="SELECT 1",
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2


def test_migrate_and_seed_commands() -> None:
    url = create_database()
    try:
        env = {"DATABASE_URL": url, "PATH": "/usr/bin:/bin"}
        out = subprocess.run(
            [RESOLVER, "migrate"], env=env, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0 and "0001" in out.stdout
        again = subprocess.run(
            [RESOLVER, "migrate"], env=env, capture_output=True, text=True, timeout=120
        )
        assert again.returncode == 0 and "up to date" in again.stdout
        seeded = subprocess.run(
            [RESOLVER, "seed"], env=env, capture_output=True, text=True, timeout=120
        )
        assert seeded.returncode == 0, seeded.stderr
        with psycopg.connect(url) as conn:

            def count(sql: str) -> int:
                row = conn.execute(sql).fetchone()
                assert row is not None
                return int(row[0])

            assert count("SELECT count(*) FROM widgets") >= 8
            assert count("SELECT count(DISTINCT metric_name) FROM kpi_metrics_history") == 5
    finally:
        drop_database(url)
