"""As a new user turning auth on: `resolver serve` with AUTH_JWT_SECRET (real PostgreSQL,
the local Bedrock Converse server for LLM SQL), tokens from `resolver token`, plain HTTP.

The issue's bar: an anonymous request gets 401, a data:read token resolves but cannot PUT
(403), a token of another tenant sees neither the widget nor its cached rows (404), and
regions=[west] / regions=[northeast] tokens get different, correctly filtered rows for the
same widget one right after the other on the compiled warehouse path, the LLM path and the
Postgres path."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fakes.bedrock_converse import MODEL_ID, ConverseServer, ToolCall
from tests.support.servers import (
    FAKE_AWS_ENV,
    REDIS_URL,
    create_database,
    drop_database,
    entry_point,
    free_port,
    resolver_serve,
)

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
SECRET = "e2e-secret-0123456789abcdef0123456789"
CONFIG_VARS = (
    "DATABASE_URL",
    "REDIS_URL",
    "DATABRICKS_HOST",
    "DATABRICKS_HTTP_PATH",
    "DATABRICKS_TOKEN",
    "BEDROCK_MODEL_ID",
)
REGION_SQL = (
    "SELECT region, count(*) AS n FROM main.claims.claim_events AS e "
    "WHERE e.region = 'west' OR 1 = 1 GROUP BY region"
)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], ConverseServer]]:
    db = create_database("wdr_e2e_auth")
    port = free_port()
    with ConverseServer(default=ToolCall(sql=REGION_SQL)) as converse:
        env = (
            {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
            | {
                "PORT": str(port),
                "DATA_DIR": str(tmp_path),
                "DATABASE_URL": db,
                "SEED_DEMO": "true",  # a fresh database: the demo widgets
                "REDIS_URL": REDIS_URL,
                "CACHE_PREFIX": f"wdr-e2e:{Path(db).name}:",
                "AUTH_JWT_SECRET": SECRET,
                "BEDROCK_MODEL_ID": MODEL_ID,
                "BEDROCK_ENDPOINT_URL": converse.url,
                "LOG_LEVEL": "WARNING",
            }
            | FAKE_AWS_ENV
        )
        try:
            with resolver_serve(env, tmp_path / "serve.log", cwd=ROOT):
                yield f"http://127.0.0.1:{port}", env, converse
        finally:
            drop_database(db)


def bearer(env: dict[str, str], tenant: str, scope: str, *claims: str) -> dict[str, str]:
    args = [entry_point("resolver"), "token", "--tenant", tenant, "--scope", scope, "--ttl", "10m"]
    for c in claims:
        args += ["--claim", c]
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    return {"Authorization": f"Bearer {out.stdout.strip()}"}


def regions(body: dict[str, Any]) -> set[str]:
    return {r["region"] for r in body["data"]}


def test_secured_service_as_a_new_user(served: tuple[str, dict[str, str], ConverseServer]) -> None:
    base, env, _converse = served
    data = base + "/v1/widgets/{}/data"
    anon = httpx.post(data.format("open-issues-kpi"))
    assert anon.status_code == 401 and anon.headers["www-authenticate"].startswith("Bearer ")
    assert httpx.get(base + "/readyz").json() == {"status": "ok"}  # details need ops:read
    ops = bearer(env, "default", "ops:read")
    assert httpx.get(base + "/readyz", headers=ops).json()["components"]["auth"]["mode"] == "jwt"

    reader = bearer(env, "default", "data:read")
    assert httpx.post(data.format("open-issues-kpi"), headers=reader).json()["source"] == "postgres"
    spec = httpx.get(
        base + "/v1/widgets/open-issues-kpi", headers=bearer(env, "default", "widgets:read")
    ).json()["spec"]
    put = httpx.put(base + "/v1/widgets/open-issues-kpi", json=spec, headers=reader)
    assert put.status_code == 403

    # another tenant: neither the widget nor its cached rows
    other = bearer(env, "globex", "data:read widgets:read", "regions=west")
    assert httpx.post(data.format("open-issues-kpi"), headers=other).status_code == 404
    assert httpx.get(base + "/v1/widgets/open-issues-kpi", headers=other).status_code == 404

    admin = bearer(env, "default", "widgets:write")
    question = {
        "title": "Claims by region (LLM)",
        "kind": "bar",
        "data_intent": {
            "metric_id": "claims_insights",
            "question": "How many claim events per region?",
        },
        "mock_data": [{"region": "x", "n": 0}],
    }
    by_region_pg = {
        "title": "Claims in progress by region",
        "kind": "bar",
        "data_intent": {
            "metric_id": "claims_in_progress_count",
            "dimensions": ["region"],
            "time_range": "last_24h",
        },
        "mock_data": [{"region": "x", "value": 0}],
    }
    for wid, s in (("claims-llm", question), ("in-progress-by-region", by_region_pg)):
        assert httpx.put(base + f"/v1/widgets/{wid}", json=s, headers=admin).status_code == 201

    west = bearer(env, "default", "data:read", "regions=west")
    northeast = bearer(env, "default", "data:read", "regions=northeast")
    for wid, backend in (
        ("claims-filed-by-region", "databricks"),  # compiled warehouse SQL
        ("claims-llm", "databricks"),  # LLM SQL that tries OR 1 = 1
        ("in-progress-by-region", "postgres"),  # bound parameters
    ):
        a = httpx.post(data.format(wid), headers=west).json()
        b = httpx.post(data.format(wid), headers=northeast).json()
        assert a["source"] == b["source"] == backend, (a, b)
        assert regions(a) == {"west"} and regions(b) == {"northeast"}, (wid, a["generated_sql"])
        assert a["data"] != b["data"]
