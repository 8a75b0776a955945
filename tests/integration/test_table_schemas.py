"""The LLM prompt's table schemas come from the configured warehouse's own catalog: read
at boot, cached, refreshed with the registry (embedded DuckDB and Databricks)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from adapters.duckdb_warehouse import DuckDBWarehouse
from adapters.lakehouse import build_lakehouse, table_schemas
from fakes.bedrock_converse import MODEL_ID, ConverseServer, ToolCall
from fakes.databricks_sea import FakeSeaServer
from tests.support.servers import (
    converse_with_fake_aws,
    create_database,
    drop_database,
    running_service,
)

TOP_MODELS_SQL = (
    "SELECT d.model, count(DISTINCT e.claim_id) AS claims FROM main.claims.claim_events e "
    "JOIN main.claims.devices d ON e.device_id = d.device_id GROUP BY d.model LIMIT 5"
)


async def test_duckdb_describes_the_demo_tables_in_databricks_types() -> None:
    wh = DuckDBWarehouse(statement_timeout_s=5)
    try:
        names = [t.name for t in table_schemas()]
        assert await wh.describe([*names, "main.claims.no_such_table"]) == table_schemas()
    finally:
        wh.close()


@pytest.fixture
def converse() -> Iterator[ConverseServer]:
    with converse_with_fake_aws() as srv:
        yield srv


@pytest.fixture
def sea() -> Iterator[tuple[FakeSeaServer, duckdb.DuckDBPyConnection]]:
    con = duckdb.connect()
    build_lakehouse(con, now=datetime.now(UTC))
    # a column the demo constants do not have: only the warehouse's catalog knows it
    con.execute("ALTER TABLE main.claims.devices ADD COLUMN warranty_tier VARCHAR")
    with FakeSeaServer(con, token="dapi-test") as srv:
        yield srv, con


async def test_the_prompt_shows_the_databricks_catalog_and_follows_its_changes(
    sea: tuple[FakeSeaServer, duckdb.DuckDBPyConnection],
    converse: ConverseServer,
    tmp_path: Path,
) -> None:
    srv, con = sea
    url = create_database()
    try:
        async with running_service(
            database_url=url,
            data_dir=tmp_path,
            databricks_host=f"{srv.server_hostname}:{srv.port}",
            databricks_transport="sea",
            databricks_http_path=srv.http_path,
            databricks_token="dapi-test",
            bedrock_model_id=MODEL_ID,
            bedrock_endpoint_url=converse.url,
            bedrock_timeout_s=5.0,
        ) as s:
            schemas = s.res.context.table_schemas
            devices = {t.name: dict(t.columns) for t in schemas.current()}["main.claims.devices"]
            assert "warranty_tier" in devices and "model" in devices
            assert any(t.startswith("DESCRIBE TABLE") for t in srv.statement_texts)

            converse.script(ToolCall(sql=TOP_MODELS_SQL))
            body = (await s.data("top-claimed-models")).json()
            assert body["source"] == "databricks", body
            assert "warranty_tier" in converse.requests[-1].system_text

            # the warehouse changes; the next registry reload picks it up
            con.execute("ALTER TABLE main.claims.devices ADD COLUMN repair_count INTEGER")
            before = schemas.refreshes  # type: ignore[attr-defined]
            await s.res.registry.refresh()
            assert schemas.refreshes == before + 1  # type: ignore[attr-defined]
            devices = {t.name: dict(t.columns) for t in schemas.current()}["main.claims.devices"]
            assert "repair_count" in devices

            # a warehouse that cannot be reached keeps what was known
            known = schemas.current()
            srv.http_status = 503
            await s.res.registry.refresh()
            assert schemas.current() == known
            srv.reset_failures()
    finally:
        srv.reset_failures()
        drop_database(url)
