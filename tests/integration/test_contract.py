"""The contract says what the service does (issue 9): schemathesis, run against the
committed docs/api/openapi.yaml on a running instance (real PostgreSQL, JWT auth on),
finds no response that contradicts it. Bounded in time (examples per operation, and a
wall-clock limit on the run)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from domain.identity import ALL_SCOPES
from fakes.bedrock_converse import MODEL_ID, REGION, ConverseServer, ToolCall
from tests.support.servers import (
    FAKE_AWS_ENV,
    create_database,
    drop_database,
    entry_point,
    free_port,
    resolver_serve,
)

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
SECRET = "contract-test-secret-" + "x" * 24
MAX_TIME_S = 300
SAFE_SQL = (
    "SELECT region, count(*) AS value FROM main.claims.claim_events GROUP BY region "
    "ORDER BY value DESC LIMIT 10"
)


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    db = create_database()
    port = free_port()
    work = tmp_path_factory.mktemp("contract")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABRICKS_"))}
    env |= {"DATABASE_URL": db, "PORT": str(port), "DATA_DIR": str(work), "AUTH_JWT_SECRET": SECRET}
    env["SEED_DEMO"] = "true"  # a fresh database: the demo widgets
    # the model (a local Converse API server) answers every question with checked-safe SQL
    converse = ConverseServer(default=ToolCall(sql=SAFE_SQL)).start()
    env |= {
        "BEDROCK_MODEL_ID": MODEL_ID,
        "BEDROCK_ENDPOINT_URL": converse.url,
        "AWS_REGION": REGION,
        "LLM_RATE_LIMIT": "100000/minute",
    } | FAKE_AWS_ENV
    try:
        with resolver_serve(env, work / "serve.log"):
            yield f"http://127.0.0.1:{port}", env
    finally:
        converse.stop()
        drop_database(db)


def test_schemathesis_finds_nothing_the_contract_does_not_say(
    instance: tuple[str, dict[str, str]],
) -> None:
    base, env = instance
    token = subprocess.run(
        [
            entry_point("resolver"),
            "token",
            "--tenant",
            "default",
            "--scope",
            " ".join(sorted(ALL_SCOPES)),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    run = subprocess.run(
        [
            entry_point("st"),
            "run",
            str(ROOT / "docs/api/openapi.yaml"),
            "--url",
            base,
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            "all",
            # A schema-valid body can still name a metric, dimension or filter column the
            # catalog does not have, or an empty time range: those 422s are the contract.
            # negative_data_rejection: schemathesis 4.15 reads the two alternative security
            # schemes (bearer OR X-API-Key) as both required, and flags a request with only
            # the bearer token as "schema-violating".
            "--exclude-checks",
            "positive_data_acceptance,negative_data_rejection",
            "--max-examples",
            "10",
            "--phases",
            "examples,fuzzing,stateful",
            "--seed",
            "20261201",
            "--workers",
            "1",
            "--request-timeout",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=MAX_TIME_S,  # the bound of this run in the suite
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "API Operations" in run.stdout  # it really ran against the instance
