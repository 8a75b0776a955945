"""`langgraph dev` (what `make studio` runs) serves the graph; a demo widget runs through
its REST API. Uses a fresh database on the real PostgreSQL server."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import create_database, drop_database, entry_point, free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = create_database()
    port = free_port()
    work = tmp_path_factory.mktemp("studio")
    env = os.environ | {
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGGRAPH_NO_VERSION_CHECK": "true",
        "DATABASE_URL": db,
        "SEED_DEMO": "true",  # a fresh database: the demo widgets
        "DATA_DIR": str(work),
    }
    env.pop("REDIS_URL", None)
    log = (work / "studio.log").open("w")
    proc = subprocess.Popen(
        [
            entry_point("langgraph"),
            "dev",
            "--no-browser",
            "--no-reload",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            if proc.poll() is not None:
                raise AssertionError(
                    "langgraph dev exited:\n" + (work / "studio.log").read_text()[-4000:]
                )
            try:
                if httpx.get(url + "/ok", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            raise AssertionError(
                "langgraph dev did not start:\n" + (work / "studio.log").read_text()[-4000:]
            )
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        drop_database(db)


def test_demo_widget_runs_through_langgraph_dev(studio: str) -> None:
    r = httpx.post(
        studio + "/runs/wait",
        json={"assistant_id": "resolver", "input": {"widget_id": "open-issues-kpi"}},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["response"]["source"] == "postgres" and out["response"]["row_count"] > 0
    assert [t["node"] for t in out["trace"]] == [
        "route",
        "cache_lookup",
        "postgres_query",
        "degrade_or_return",
    ]


def test_warehouse_widget_runs_through_langgraph_dev(studio: str) -> None:
    r = httpx.post(
        studio + "/runs/wait",
        json={
            "assistant_id": "resolver",
            "input": {"widget_id": "claims-filed-by-region", "dry_run": True},
        },
        timeout=120,
    )
    assert r.status_code == 200, r.text
    resp = r.json()["response"]
    assert resp["dry_run"] is True and "main.claims.claim_events" in resp["generated_sql"]
