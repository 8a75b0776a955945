"""The production transport (`thrift`, the connector's default backend) end to end: the real
databricks-sql-connector against a local Spark Thrift Server started from the pyspark
package (HTTP transport, loopback).

The open-source server differs from a Databricks SQL warehouse in four small ways; the
test applies these test-only patches to the connector (never in the product):
- it reports a Hive protocol version below the connector's minimum (the check is skipped);
- its result-set metadata has no `resultFormat` (set to column-based, which it sends);
- it always sends `hasMoreRows=false`, so results over one fetch batch would be cut short
  (a batch that carried rows means: ask again; an empty one ends the result);
- in HTTP mode with authentication NONE it reads a Basic Authorization header, not the
  connector's Bearer token (the token is sent as Basic credentials).
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.databricks import DatabricksWarehouse
from domain.failures import FailureKind, WarehouseFailure
from tests.support.servers import free_port

pytestmark = pytest.mark.slow

pyspark = pytest.importorskip("pyspark")
if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("no Java runtime for Spark", allow_module_level=True)

SPARK_HOME = Path(pyspark.__file__).parent
START_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def thrift_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A Spark Thrift Server on a free loopback port (HTTP transport, path /cliservice)."""
    tmp = tmp_path_factory.mktemp("spark-thrift")
    port = free_port()
    log = (tmp / "server.log").open("wb")
    env = os.environ | {"SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1"}
    proc = subprocess.Popen(
        [
            str(SPARK_HOME / "bin" / "spark-submit"),
            "--master",
            "local[1]",
            "--class",
            "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2",
            "--conf",
            "spark.ui.enabled=false",
            "--conf",
            "spark.driver.host=127.0.0.1",
            "--conf",
            "spark.driver.bindAddress=127.0.0.1",
            "--conf",
            f"spark.sql.warehouse.dir={tmp / 'warehouse'}",
            "--driver-java-options",
            f"-Dderby.system.home={tmp}",
            "--hiveconf",
            "hive.server2.transport.mode=http",
            "--hiveconf",
            f"hive.server2.thrift.http.port={port}",
            "--hiveconf",
            "hive.server2.thrift.http.path=cliservice",
            "--hiveconf",
            "hive.server2.thrift.bind.host=127.0.0.1",
            "--hiveconf",
            "hive.server2.authentication=NONE",
            "spark-internal",
        ],
        cwd=tmp,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while b"HiveThriftServer2 started" not in (tmp / "server.log").read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (tmp / "server.log").read_text(errors="replace")[-3000:]
                raise AssertionError(f"the Spark Thrift Server did not start:\n{tail}")
            time.sleep(0.5)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _rows_in(rowset: Any) -> int:
    for col in (rowset.columns or []) if rowset is not None else []:
        for name in (
            "boolVal",
            "byteVal",
            "i16Val",
            "i32Val",
            "i64Val",
            "doubleVal",
            "stringVal",
            "binaryVal",
        ):
            values = getattr(col, name, None)
            if values is not None:
                return len(values.values)
    return len(rowset.rows or []) if rowset is not None else 0


@pytest.fixture
def open_source_server_patches(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test-only connector patches of the module docstring."""
    from databricks.sql.auth import authenticators
    from databricks.sql.backend import thrift_backend
    from databricks.sql.thrift_api.TCLIService import ttypes

    client = thrift_backend.ThriftDatabricksClient
    monkeypatch.setattr(client, "_check_protocol_version", lambda self, resp: None)
    column_based = ttypes.TSparkRowSetType.COLUMN_BASED_SET
    real = client.make_request

    def make_request(self: Any, method: Any, request: Any, *args: Any, **kw: Any) -> Any:
        resp = real(self, method, request, *args, **kw)
        if isinstance(resp, ttypes.TGetResultSetMetadataResp) and resp.resultFormat is None:
            resp.resultFormat = column_based
        if isinstance(resp, ttypes.TFetchResultsResp):
            if resp.resultSetMetadata is None:
                resp.resultSetMetadata = ttypes.TGetResultSetMetadataResp(resultFormat=column_based)
            elif resp.resultSetMetadata.resultFormat is None:
                resp.resultSetMetadata.resultFormat = column_based
            resp.hasMoreRows = _rows_in(resp.results) > 0
        return resp

    monkeypatch.setattr(client, "make_request", make_request)

    def basic(self: Any, headers: dict[str, str]) -> None:
        headers["Authorization"] = "Basic " + base64.b64encode(b"resolver:token").decode()

    monkeypatch.setattr(authenticators.AccessTokenAuthProvider, "add_headers", basic)


@pytest.fixture
async def warehouse(thrift_server: int, open_source_server_patches: None) -> Any:
    wh = DatabricksWarehouse(
        server_hostname="http://127.0.0.1",
        port=thrift_server,
        http_path="/cliservice",
        access_token="token",
        query_timeout_s=60,
        connect_timeout_s=30,  # a cold Spark session is slow on a busy machine
    )
    assert wh.transport == "thrift"  # the default
    yield wh
    await wh.aclose()


async def test_a_typed_statement_with_query_tags_over_thrift(warehouse: Any) -> None:
    result = await warehouse.execute(
        "SELECT 1 AS n, 'west' AS region, CAST(2.5 AS DECIMAL(10,2)) AS amount, "
        "CAST('2026-11-30' AS DATE) AS day",
        max_rows=10,
        tags={"widget": "w", "metric": "m", "tenant": "t"},
    )
    assert [(c.name, c.type) for c in result.columns] == [
        ("n", "integer"),
        ("region", "string"),
        ("amount", "number"),
        ("day", "date"),
    ]
    assert result.rows == [{"n": 1, "region": "west", "amount": 2.5, "day": "2026-11-30"}]
    assert result.truncated is False


async def test_large_results_page_past_one_fetch_and_are_capped(warehouse: Any) -> None:
    result = await warehouse.execute("SELECT id FROM range(25000) ORDER BY id", max_rows=12000)
    assert len(result.rows) == 12000 and result.truncated is True
    assert result.rows[0] == {"id": 0} and result.rows[-1] == {"id": 11999}


async def test_a_sql_error_over_thrift_is_databricks_error(warehouse: Any) -> None:
    with pytest.raises(WarehouseFailure) as info:
        await warehouse.execute("SELECT * FROM main.claims.no_such_table", max_rows=10)
    assert info.value.kind == FailureKind.databricks_error
    assert "no_such_table" in info.value.detail.lower()
