"""As a new user: `resolver serve` with no configuration at all (embedded PostgreSQL,
in-process cache, embedded DuckDB) answers a Postgres widget and a warehouse widget live."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.servers import free_port, resolver_serve

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
CONFIG_VARS = (
    "DATABASE_URL",
    "REDIS_URL",
    "DATABRICKS_HOST",
    "DATABRICKS_HTTP_PATH",
    "DATABRICKS_TOKEN",
    "BEDROCK_MODEL_ID",
)


def test_embedded_defaults_serve_live_data(embedded_tmp: Path) -> None:
    tmp_path = embedded_tmp
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS} | {
        "PORT": str(port),
        "DATA_DIR": str(tmp_path),
    }
    base = f"http://127.0.0.1:{port}"
    with resolver_serve(env, tmp_path / "serve.log", cwd=tmp_path, timeout_s=240) as proc:
        ready = httpx.get(base + "/readyz").json()
        assert (
            ready["components"]["cache"]["kind"] == "memory"
            and ready["components"]["warehouse"]["kind"] == "duckdb"
        )
        pg = httpx.post(base + "/v1/widgets/open-issues-kpi/data").json()
        assert pg["source"] == "postgres" and pg["row_count"] > 0
        hit = httpx.post(base + "/v1/widgets/open-issues-kpi/data").json()
        assert hit["cache_hit"] is True and hit["freshness_seconds"] > 0
        wh = httpx.post(base + "/v1/widgets/claims-filed-by-region/data").json()
        assert wh["source"] == "databricks" and wh["row_count"] > 0
        assert (tmp_path / "pg").exists()  # the embedded server's data lives under DATA_DIR
        proc.terminate()
        assert proc.wait(30) in (0, -15)  # uvicorn re-raises SIGTERM after a graceful shutdown
        # a clean shutdown stops the embedded PostgreSQL it started
        left = subprocess.run(
            ["pgrep", "-f", f"postgres -D {tmp_path / 'pg'}"], capture_output=True, text=True
        )
        assert left.stdout.strip() == "", left.stdout
