"""DATABRICKS_TRANSPORT (thrift default | kernel | sea) and the statements' query_tags."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from adapters.databricks import DatabricksWarehouse
from adapters.databricks.warehouse import INSTANCE
from fakes.databricks_sea import FakeSeaServer
from service.settings import Settings
from tests.support.servers import (
    create_database,
    drop_database,
    running_service,
    sea_settings,
)

KERNEL = importlib.util.find_spec("databricks_sql_kernel") is not None


def _wh(transport: str | None = None) -> DatabricksWarehouse:
    kw: dict[str, Any] = {} if transport is None else {"transport": transport}
    return DatabricksWarehouse(
        server_hostname="adb-1.example.net",
        http_path="/sql/1.0/warehouses/abc",
        access_token="t",
        **kw,
    )


async def test_the_default_is_the_connectors_thrift_backend() -> None:
    wh = _wh()
    try:
        assert wh.transport == "thrift"
        kwargs = wh._sessions._connect_kwargs()
        assert kwargs["use_sea"] is False and "use_kernel" not in kwargs
        assert kwargs["enable_telemetry"] is False
        assert Settings().databricks_transport == "thrift"
    finally:
        await wh.aclose()


async def test_sea_only_where_asked_for() -> None:
    wh = _wh("sea")
    try:
        kwargs = wh._sessions._connect_kwargs()
        assert kwargs["use_sea"] is True and "use_kernel" not in kwargs
    finally:
        await wh.aclose()


@pytest.mark.skipif(KERNEL, reason="the kernel extension is installed here")
def test_kernel_without_the_extension_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match=r"databricks-sql-connector\[kernel\]"):
        _wh("kernel")
    with pytest.raises(ValidationError, match=r"DATABRICKS_TRANSPORT=kernel needs"):
        Settings(databricks_transport="kernel")


@pytest.mark.skipif(not KERNEL, reason="the kernel extension is not installed")
async def test_kernel_uses_use_kernel() -> None:
    wh = _wh("kernel")
    try:
        kwargs = wh._sessions._connect_kwargs()
        assert kwargs["use_kernel"] is True and kwargs["use_sea"] is False
    finally:
        await wh.aclose()


def test_an_unknown_transport_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown Databricks transport"):
        _wh("odbc")
    with pytest.raises(ValidationError, match="databricks_transport"):
        Settings(databricks_transport="odbc")  # type: ignore[arg-type]  # the point: refused


async def test_every_statement_is_tagged_with_widget_metric_and_tenant(
    sea: FakeSeaServer, tmp_path: Path
) -> None:
    url = create_database()
    try:
        async with running_service(
            database_url=url,
            data_dir=tmp_path,
            **sea_settings(sea),
        ) as s:
            body = (await s.data("claims-paid-weekly", refresh=True)).json()
            assert body["source"] == "databricks", body
            stmt = next(x for x in reversed(sea.statements) if x.statement == body["generated_sql"])
            tags = {t["key"]: t["value"] for t in stmt.request["query_tags"]}
            assert tags == {
                "app": "widget-data-resolver",
                "widget": "claims-paid-weekly",
                "metric": "claims_paid_amount",
                "tenant": "default",  # the dev principal's
                "run": "refresh",  # refresh=true
                "instance": INSTANCE,  # which process ran it
            }
    finally:
        drop_database(url)
