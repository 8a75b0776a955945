"""Integration (issue 18, "row-level security must fail closed"), over the HTTP API on real
PostgreSQL and Redis, the embedded DuckDB warehouse and the local Bedrock Converse server:

- a missing, empty, comments-only or malformed access policy, a duplicated key or a
  directory stops the boot (in-process and `resolver serve`) naming the problem and the
  fix; only ROW_FILTERS_DISABLED=true starts without one; /readyz names the policy;
- LLM SQL from a `regions=west` caller never reads other regions through an operator that
  reshapes the table (PIVOT renaming a constant to the filter column...), never reaches
  the warehouse with a Spark `${...}` variable, and never reads hidden `_metadata` columns.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from adapters.identity import mint_token
from fakes.bedrock_converse import ConverseServer, ToolCall
from service.wiring import BootError
from tests.support.servers import (
    Service,
    copy_config,
    create_database,
    drop_database,
    entry_point,
    running_service,
    service_settings,
)

SECRET = "fail-closed-secret-0123456789abcdef"
SCOPES = "data:read widgets:read widgets:write"
CE = "main.claims.claim_events"
GOOD_POLICY = "tables:\n  main.claims.claim_events: {column: region, claim: regions}\n"
# the secured service of this module (a tenant's JWT; row filters from the policy)
SECURED = {"auth_jwt_secret": SECRET, "auth_audience": "wdr", "llm_rate_limit": "1000/minute"}
pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.service(converse=True, **SECURED),
]


def west(tenant: str = "rls-co", scopes: str = SCOPES) -> dict[str, str]:
    tok = mint_token(
        SECRET, tenant=tenant, scopes=scopes, claims={"regions": ["west"]}, audience="wdr"
    )
    return {"Authorization": f"Bearer {tok}"}


OPS = west(scopes="ops:read")  # /readyz shows its details to `ops:read` only


def _settings(db_url: str, data_dir: Path, **over: Any) -> dict[str, Any]:
    """The module's secured service with other settings (`over`)."""
    return service_settings(db_url, data_dir, **(SECURED | over))


@pytest.fixture(autouse=True)
def _reset(request: pytest.FixtureRequest) -> None:
    if "converse" in request.fixturenames:
        request.getfixturevalue("converse").reset()


async def ask(svc: Service, converse: ConverseServer, name: str, sql: str) -> dict[str, Any]:
    """A question widget of `regions=west`'s tenant whose model answers `sql`, resolved."""
    spec = {
        "title": f"attack {name}",
        "kind": "table",
        "data_intent": {"metric_id": "claims_insights", "question": f"Claims ({name})?"},
        "mock_data": [{"region": "x", "n": 0}],
    }
    wid = f"rls-{name.replace('_', '-')}"
    r = await svc.client.put(f"/v1/widgets/{wid}", json=spec, headers=west())
    assert r.status_code in (200, 201), r.text
    converse.script(ToolCall(sql=sql))
    body: dict[str, Any] = (await svc.data(wid, headers=west())).json()
    return body


# ------------------------------------------------------------------ the policy at boot

BAD_POLICIES: dict[str, tuple[str | None, str]] = {
    "missing": (None, "does not exist"),
    "directory": ("<dir>", "is a directory"),
    "empty": ("", "is empty"),
    "comments_only": ("# tables:\n#   main.claims.claim_events: {column: region}\n", "is empty"),
    "no_rules": ("version: 1\ntables: {}\n", "no rule"),
    "malformed_yaml": ("tables: {main.claims.claim_events: [\n", "invalid YAML"),
    "duplicate_table": (
        GOOD_POLICY + "  main.claims.claim_events: {column: channel, claim: regions}\n",
        "duplicate key 'main.claims.claim_events'",
    ),
    "duplicate_table_other_case": (
        GOOD_POLICY + "  MAIN.claims.Claim_Events: {column: channel, claim: regions}\n",
        "listed twice",
    ),
}


def write_policy(tmp_path: Path, content: str | None) -> Path:
    path = tmp_path / "policy" / "access_policy.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    if content == "<dir>":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    return path


@pytest.mark.parametrize("case", sorted(BAD_POLICIES))
async def test_a_bad_policy_stops_the_boot_naming_the_problem(
    db_url: str, tmp_path: Path, case: str
) -> None:
    content, named = BAD_POLICIES[case]
    path = write_policy(tmp_path, content)
    with pytest.raises(BootError) as err:
        async with running_service(**_settings(db_url, tmp_path, access_policy_file=path)):
            pass
    assert "refusing to start" in str(err.value) and named in str(err.value)
    assert str(path) in str(err.value)


async def test_a_policy_naming_an_unknown_table_says_how_to_fix_it(
    db_url: str, tmp_path: Path
) -> None:
    path = write_policy(tmp_path, "tables:\n  main.claims.nope: {column: region, claim: regions}\n")
    with pytest.raises(BootError) as err:
        async with running_service(**_settings(db_url, tmp_path, access_policy_file=path)):
            pass
    assert "main.claims.nope" in str(err.value) and f"fix {path}" in str(err.value)


@pytest.mark.parametrize("case", ["missing", "duplicate_table", "directory"])
def test_resolver_serve_refuses_a_bad_policy_with_a_helpful_message(
    tmp_path: Path, case: str
) -> None:
    """Tried as a new user would: `resolver serve` exits at once, saying what is wrong and
    how to fix it, with no traceback (it would otherwise serve with no row filters)."""
    content, named = BAD_POLICIES[case]
    path = write_policy(tmp_path, content)
    url = create_database()
    try:
        env = os.environ | {
            "DATABASE_URL": url,
            "SEED_DEMO": "true",  # a fresh database: the demo catalog and widgets
            "DATA_DIR": str(tmp_path),
            "PORT": "0",
            "ACCESS_POLICY_FILE": str(path),
            "AUTH_JWT_SECRET": SECRET,
        }
        proc = subprocess.run(
            [entry_point("resolver"), "serve"], env=env, capture_output=True, text=True, timeout=120
        )
    finally:
        drop_database(url)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "refusing to start" in out and named in out and str(path) in out
    fix = {
        "missing": "ROW_FILTERS_DISABLED=true",
        "directory": "point ACCESS_POLICY_FILE at the policy",
        "duplicate_table": "fix the access policy file",
    }
    assert fix[case] in out
    assert "Traceback" not in out


def test_resolver_serve_names_an_unknown_table_of_the_policy_without_a_traceback(
    tmp_path: Path,
) -> None:
    """Checked against the catalog once the service opens its resources: the refusal is
    the server's last words, alone (service/app.py::BootRefusalAsText)."""
    path = write_policy(tmp_path, "tables:\n  main.claims.nope: {column: region, claim: regions}\n")
    url = create_database()
    try:
        env = os.environ | {
            "DATABASE_URL": url,
            "SEED_DEMO": "true",
            "DATA_DIR": str(tmp_path),
            "PORT": "0",
            "ACCESS_POLICY_FILE": str(path),
            "AUTH_JWT_SECRET": SECRET,
        }
        proc = subprocess.run(
            [entry_point("resolver"), "serve"], env=env, capture_output=True, text=True, timeout=120
        )
    finally:
        drop_database(url)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "refusing to start" in out and "main.claims.nope" in out and f"fix {path}" in out
    assert "Traceback" not in out


async def test_row_filters_disabled_is_the_only_way_without_a_policy(
    db_url: str, tmp_path: Path
) -> None:
    """ROW_FILTERS_DISABLED=true starts whatever the policy file (here: none at all) and
    says so in /readyz; every region is then readable, as documented."""
    config = copy_config(tmp_path)
    (config / "access_policy.yaml").unlink()
    settings = _settings(db_url, tmp_path, row_filters_disabled=True, config_dir=config)
    async with running_service(**settings) as s:
        ready = (await s.client.get("/readyz", headers=OPS)).json()
        assert ready["components"]["access_policy"] == {
            "row_filters": False,
            "path": None,
            "fingerprint": None,
        }
        body = (await s.data("claims-filed-by-region", headers=west("default"))).json()
        assert body["source"] == "databricks" and len({r["region"] for r in body["data"]}) > 1


async def test_readyz_names_the_policy_in_force(svc: Service) -> None:
    from domain.access import load_policy

    policy = load_policy(svc.settings.access_policy_path)
    shown = (await svc.client.get("/readyz", headers=OPS)).json()["components"]["access_policy"]
    assert shown["row_filters"] is True and shown["fingerprint"] == policy.fingerprint
    assert shown["path"] == str(svc.settings.access_policy_path)
    assert shown["fingerprint"].startswith("sha256:")


# ------------------------------------------------------------------ LLM SQL attacks

# A PIVOT on a filtered table that names a constant `region`: over west's rows alone the
# `max('west')` of another region's pivot value is NULL, so a row labelled 'west' means
# other regions' rows were read.
PIVOT_ATTACKS = {
    "pivot_value_alias": (
        f"SELECT region, count(*) AS n FROM {CE} "
        "PIVOT (max('west') FOR region IN ('northeast' AS region)) GROUP BY region"
    ),
    "pivot_quoted_case": (
        "select `REGION` AS region, count(*) AS n from `main`.`claims`.`Claim_Events` "
        "pivot (MAX('west') for Region in ('southeast' AS `Region`)) group by `REGION`"
    ),
    "pivot_in_cte": (
        f"WITH x AS (SELECT * FROM {CE} PIVOT (max('west') FOR region IN ('midwest' AS region))) "
        "SELECT region, count(*) AS n FROM x GROUP BY region"
    ),
    "pivot_in_subquery_aliased": (
        f"SELECT s.region, count(*) AS n FROM (SELECT p.region FROM {CE} AS e "
        "PIVOT (max('west') FOR region IN ('southwest' AS region)) AS p) AS s GROUP BY s.region"
    ),
    "pivot_on_alerts": (
        "SELECT region, count(*) AS n FROM main.ops.alerts "
        "PIVOT (max('west') FOR region IN ('northeast' AS region)) GROUP BY region"
    ),
}


@pytest.mark.parametrize("attack", sorted(PIVOT_ATTACKS))
async def test_a_pivot_never_passes_other_regions_rows(
    svc: Service, converse: ConverseServer, attack: str
) -> None:
    body = await ask(svc, converse, attack, PIVOT_ATTACKS[attack])
    sql = body["generated_sql"] or ""
    if body["source"] == "safety_violation":  # refused, with a reason
        assert body["error_detail"], body
        return
    leaked = [r for r in body["data"] if r.get("region") == "west" and r.get("n")]
    assert not leaked, sql
    # the filter is on the bare table read, beneath the PIVOT
    assert re.search(r"\(SELECT \* FROM [`\w.]+ WHERE `region` IN \('west'\)\)", sql), sql


SUBSTITUTIONS = {
    "env_in_literal": f"SELECT region, '${{env:DATABRICKS_TOKEN}}' AS n FROM {CE}",
    "spark_conf_in_where": (
        f"SELECT region, count(*) AS n FROM {CE} "
        "WHERE channel <> '${spark.hadoop.fs.s3a.secret.key}' GROUP BY region"
    ),
    "system_in_double_quotes": f'SELECT region, "${{system:user.home}}" AS n FROM {CE}',
    "in_identifier": f"SELECT region AS `${{hiveconf:x}}`, 1 AS n FROM {CE}",
    "in_cte_upper_case": (
        f"WITH c AS (SELECT region, '${{ENV:AWS_SECRET_ACCESS_KEY}}' AS n FROM {CE}) "
        "SELECT region, n FROM c"
    ),
    "escaped_dollar": f"SELECT region, '$\\{{env:HOME}}' AS n FROM {CE}",
    "in_comment": f"SELECT region, 1 AS n FROM {CE} /* ${{env:HOME}} */",
}


@pytest.mark.parametrize("attack", sorted(SUBSTITUTIONS))
async def test_spark_variable_substitution_never_reaches_the_warehouse(
    svc: Service, converse: ConverseServer, attack: str
) -> None:
    body = await ask(svc, converse, attack, SUBSTITUTIONS[attack])
    assert body["source"] == "safety_violation" and body["executed"] is False, body
    assert "variable_substitution" in (body["error_detail"] or ""), body


HIDDEN = {
    "file_path": f"SELECT DISTINCT _metadata.file_path AS region, 1 AS n FROM {CE}",
    "qualified": f"SELECT e._metadata.file_name AS region, 1 AS n FROM {CE} AS e",
    "quoted_upper": f"SELECT `_METADATA`.`file_path` AS region, 1 AS n FROM {CE}",
    "bracket": "SELECT _metadata['file_path'] AS region, 1 AS n FROM main.claims.devices",
    "in_where": f"SELECT region, 1 AS n FROM {CE} WHERE _metadata.file_size > 0",
    "whole_struct_in_cte": (
        f"WITH m AS (SELECT to_json(_metadata) AS region FROM {CE}) SELECT region, 1 AS n FROM m"
    ),
}


@pytest.mark.parametrize("attack", sorted(HIDDEN))
async def test_hidden_metadata_columns_are_refused(
    svc: Service, converse: ConverseServer, attack: str
) -> None:
    body = await ask(svc, converse, f"hidden_{attack}", HIDDEN[attack])
    assert body["source"] == "safety_violation" and body["executed"] is False, body
    assert "hidden_column" in (body["error_detail"] or ""), body


HONEST_PIVOTS = {
    "alias_after": (
        f"SELECT 'west' AS region, sum(p.app) AS n FROM {CE} "
        "PIVOT (count(*) FOR channel IN ('app' AS app)) AS p"
    ),
    "over_a_subquery": (
        f"SELECT event_type AS region, app AS n FROM (SELECT channel, event_type FROM {CE}) "
        "PIVOT (count(*) FOR channel IN ('app' AS app))"
    ),
}


@pytest.mark.parametrize("query", sorted(HONEST_PIVOTS))
async def test_an_honest_pivot_is_answered_from_the_callers_rows(
    svc: Service, converse: ConverseServer, query: str
) -> None:
    body = await ask(svc, converse, f"honest_{query}", HONEST_PIVOTS[query])
    assert body["source"] == "databricks" and body["row_count"] > 0, body
    assert "IN ('west')" in (body["generated_sql"] or "")
    if query == "alias_after":  # the same number as a plain count of west's app claims
        plain = await ask(
            svc,
            converse,
            "honest_plain_count",
            f"SELECT 'west' AS region, count(*) AS n FROM {CE} WHERE channel = 'app'",
        )
        assert body["data"] == plain["data"] and plain["data"][0]["n"] > 0
