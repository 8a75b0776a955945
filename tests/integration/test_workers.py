"""`resolver serve --workers N`: N processes on one port sharing the real Redis and
PostgreSQL; refused without REDIS_URL."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import httpx

from tests.support.servers import REDIS_URL, create_database, drop_database, entry_point, free_port

RESOLVER = entry_point("resolver")


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "BEDROCK_"))}
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_URL", None)
    return env | {"DATA_DIR": str(tmp / "data"), "LOG_LEVEL": "INFO"} | extra


def test_workers_need_redis(tmp_path: Path) -> None:
    out = subprocess.run(
        [RESOLVER, "serve", "--workers", "2"],
        env=_env(tmp_path, PORT=str(free_port())),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "needs REDIS_URL" in out.stderr


def test_two_workers_share_one_port_and_the_cache(tmp_path: Path) -> None:
    url = create_database()
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [RESOLVER, "serve", "--workers", "2"],
            env=_env(
                tmp_path,
                PORT=str(port),
                DATABASE_URL=url,
                SEED_DEMO="true",  # a fresh database: the demo widgets
                REDIS_URL=REDIS_URL,
                CACHE_PREFIX=f"wdr-test:{uuid.uuid4().hex[:8]}:",
            ),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        ready = 0
        while time.monotonic() < deadline and ready < 2:
            assert proc.poll() is None, log.read_text()
            ready = log.read_text().count("resolver ready")
            time.sleep(0.3)
        assert ready == 2, log.read_text()  # two worker processes, each with its own lifespan
        with httpx.Client(base_url=base, timeout=30) as client:
            first = client.post("/v1/widgets/open-issues-kpi/data").json()
            hits = [client.post("/v1/widgets/open-issues-kpi/data").json() for _ in range(20)]
        assert first["source"] == "postgres"
        # whichever worker answered, the entry came from the shared Redis cache
        assert all(h["cache_hit"] and h["resolved_at"] == first["resolved_at"] for h in hits)
        text = log.read_text()
        assert text.count("Started server process") == 2
        assert "leases=redis" in text
    finally:
        proc.terminate()
        proc.wait(30)
        drop_database(url)
