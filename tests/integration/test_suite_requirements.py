"""Run without its PostgreSQL or Redis, the suite fails once, before any test, saying what
it needs (README "Two commands") and the variables that point it elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_missing_servers_fail_the_session_once_with_the_requirement() -> None:
    closed = free_port()  # nothing listens there
    env = os.environ | {
        "TEST_PG_ADMIN_URL": f"postgresql://postgres@127.0.0.1:{closed}/postgres",
        "TEST_REDIS_URL": f"redis://127.0.0.1:{closed}/0",
    }
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/integration/test_cache.py",
            "tests/integration/test_docs.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 3, text[-3000:]
    assert "needs PostgreSQL on 127.0.0.1:5432" in text and "Redis on 127.0.0.1:6379" in text
    assert "TEST_PG_ADMIN_URL" in text and "TEST_REDIS_URL" in text
    assert f"127.0.0.1:{closed}" in text
    assert "no tests ran" in text, text[-3000:]
    assert text.count("Connection refused") <= 2, text[-3000:]  # once per server, not per test


def test_pure_suites_run_without_the_servers() -> None:
    closed = free_port()
    env = os.environ | {
        "TEST_PG_ADMIN_URL": f"postgresql://postgres@127.0.0.1:{closed}/postgres",
        "TEST_REDIS_URL": f"redis://127.0.0.1:{closed}/0",
    }
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/unit/test_refresh.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
