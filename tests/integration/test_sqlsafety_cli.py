"""`resolver check-sql` (sqlsafety.cli): JSON verdicts on stdout and exit codes 0/1/2,
run as a real process (`python -m sqlsafety.cli`), plus a few in-process edge cases."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sqlsafety.cli import check_sql_main

REPO_ROOT = Path(__file__).resolve().parents[2]
KPI = (
    "SELECT region, count(*) AS value FROM main.claims.claim_events "
    "WHERE event_ts >= TIMESTAMP '2026-01-01 00:00:00' GROUP BY region"
)


def run(
    args: list[str], stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sqlsafety.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def in_process(
    args: list[str], stdin: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = check_sql_main(args)
    out, err = capsys.readouterr()
    return code, out, err


def one_json(out: str) -> dict[str, Any]:
    lines = out.splitlines()
    assert len(lines) == 1, out
    return json.loads(lines[0])


# ----------------------------------------------------------------------------- stdin mode (subprocess)


def test_kpi_query_allowed() -> None:
    proc = run(["--dialect", "databricks"], KPI)
    assert proc.returncode == 0, proc.stderr
    verdict = one_json(proc.stdout)
    assert verdict == {
        "allowed": True,
        "rule": None,
        "reason": None,
        "sql": (
            "SELECT region, COUNT(*) AS value FROM main.claims.claim_events WHERE event_ts >= "
            "CAST('2026-01-01 00:00:00' AS TIMESTAMP) GROUP BY region LIMIT 10000"
        ),
    }


def test_stacked_drop_rejected() -> None:
    proc = run(["--dialect", "databricks"], "SELECT 1; DROP TABLE main.claims.devices")
    assert proc.returncode == 1
    verdict = one_json(proc.stdout)
    assert (verdict["allowed"], verdict["rule"], verdict["sql"]) == (
        False,
        "single_statement",
        None,
    )
    assert verdict["reason"]


def test_postgres_data_modifying_cte_rejected() -> None:
    proc = run(
        ["--dialect", "postgres"],
        "WITH d AS (DELETE FROM kpi_metrics_history RETURNING *) SELECT * FROM d",
    )
    assert proc.returncode == 1
    assert one_json(proc.stdout)["rule"] == "read_only"


def test_empty_stdin_is_a_usage_error() -> None:
    proc = run(["--dialect", "databricks"], "  \n")
    assert proc.returncode == 2
    assert proc.stdout == "" and "no SQL" in proc.stderr


def test_bad_dialect_is_a_usage_error() -> None:
    proc = run(["--dialect", "oracle"], "SELECT 1")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_jsonl_file(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    lines = [
        {"id": "kpi", "sql": KPI},
        {"id": 7, "sql": "SELECT * FROM read_files('/x')"},
        {},
        {"id": "pg", "sql": "SELECT avg(value) FROM kpi_metrics_history", "dialect": "postgres"},
    ]
    path.write_text("\n".join("" if not line else json.dumps(line) for line in lines) + "\n")
    proc = run(["--jsonl", str(path), "--dialect", "databricks"])
    assert proc.returncode == 1, proc.stderr
    got = [json.loads(line) for line in proc.stdout.splitlines()]
    assert got == [
        {"id": "kpi", "allowed": True, "rule": None, "reason": None},
        {"id": 7, "allowed": False, "rule": "table_function", "reason": got[1]["reason"]},
        {"id": "pg", "allowed": True, "rule": None, "reason": None},
    ]


def test_config_dir_override(tmp_path: Path) -> None:
    (tmp_path / "metrics.yaml").write_text(
        "metrics:\n  - name: a\n    definition: {table: main.sales.orders}\n"
    )
    env = {"RESOLVER_CONFIG_DIR": str(tmp_path)}
    assert run(["--dialect", "databricks"], "SELECT * FROM main.sales.orders", env).returncode == 0
    assert run(["--dialect", "databricks"], KPI, env).returncode == 1


# ----------------------------------------------------------------------------- in-process edge cases


def test_allow_table_replaces_the_default(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sql = "SELECT * FROM main.claims.devices"
    code, out, _ = in_process(["--dialect", "databricks"], sql, capsys, monkeypatch)
    assert code == 0 and one_json(out)["allowed"] is True
    args = [
        "--dialect",
        "databricks",
        "--allow-table",
        "main.claims.claim_events",
        "--allow-table",
        "main.ops.alerts",
    ]
    code, out, _ = in_process(args, sql, capsys, monkeypatch)
    assert code == 1 and one_json(out)["rule"] == "table_not_allowed"


def test_max_rows(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = in_process(
        ["--dialect", "databricks", "--max-rows", "5"], KPI, capsys, monkeypatch
    )
    assert code == 0 and one_json(out)["sql"].endswith("LIMIT 5")
    code, out, _ = in_process(
        ["--dialect", "databricks", "--max-rows", "5"], KPI + " LIMIT 6", capsys, monkeypatch
    )
    assert code == 1 and one_json(out)["rule"] == "row_limit"


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        ([], "SELECT 1", "--dialect is required"),
        (["--dialect", "databricks", "--max-rows", "0"], "SELECT 1", "at least 1"),
        (
            ["--dialect", "databricks", "--allow-table", "claims.claim_events"],
            "SELECT 1",
            "three-part",
        ),
        (["--jsonl", "/nonexistent/cases.jsonl"], "", "cannot read"),
    ],
)
def test_usage_errors(
    args: list[str],
    stdin: str,
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, err = in_process(args, stdin, capsys, monkeypatch)
    assert (code, out) == (2, "")
    assert message in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"id": 1, "sql": "SELECT 1", "dialect": "postgres"}\n{"id": 2, "sql": \n',
            "cases.jsonl:2: invalid JSON",
        ),
        (
            '{"id": 1, "sql": "SELECT 1", "dialect": "postgres"}\n["an", "array"]\n',
            "cases.jsonl:2: expected an object",
        ),
        ('{"sql": "SELECT 1"}\n', "cases.jsonl:1: expected an object"),
        (
            '{"id": 1, "sql": "SELECT 1", "dialect": "mysql"}\n',
            "cases.jsonl:1: dialect must be one of",
        ),
        (
            '{"id": 1, "sql": "SELECT 1"}\n',
            "cases.jsonl:1: dialect must be one of",
        ),  # no --dialect either
    ],
)
def test_bad_jsonl_lines(
    content: str,
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_text(content)
    code, out, err = in_process(["--jsonl", str(path)], "", capsys, monkeypatch)
    assert (code, out) == (2, ""), "nothing is checked when any line is malformed"
    assert message in err


def test_jsonl_all_allowed_exits_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ok.jsonl"
    path.write_text(json.dumps({"id": "a", "sql": KPI, "dialect": "databricks"}) + "\n")
    code, out, _ = in_process(["--jsonl", str(path)], "", capsys, monkeypatch)
    assert code == 0 and one_json(out) == {"id": "a", "allowed": True, "rule": None, "reason": None}


def test_help_exits_zero(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = in_process(["--help"], "", capsys, monkeypatch)
    assert code == 0 and "--allow-table" in out
