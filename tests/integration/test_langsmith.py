"""LangSmith: with its standard variables set, the graph's runs reach the (local) LangSmith
API, with widget ids and node names but never a row of data."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakes.langsmith_api import LangSmithApi
from observability.langsmith import scrub
from tests.support.servers import REDIS_URL, create_database, drop_database, running_service

SECRET = "ROW-VALUE-7f3a9c"


def test_scrub_hides_rows_anywhere() -> None:
    doc = {
        "rows": [{"v": SECRET}],
        "response": {"data": [{"v": SECRET}], "source": "postgres", "row_count": 1},
        "nested": [{"mock_data": [{"v": SECRET}, {"v": 2}]}],
        "trace": [{"node": "route"}],
    }
    out = scrub(doc)
    assert SECRET not in repr(out)
    assert out["rows"] == "<1 rows hidden>" and out["nested"][0]["mock_data"] == "<2 rows hidden>"
    assert out["response"]["source"] == "postgres" and out["trace"] == [{"node": "route"}]


async def test_graph_runs_reach_langsmith_without_row_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from langsmith.utils import tracing_is_enabled

    tracing_is_enabled()  # langsmith caches what it read: the service must read afresh
    url = create_database()
    try:
        with LangSmithApi() as api:
            monkeypatch.setenv("LANGSMITH_TRACING", "true")
            monkeypatch.setenv("LANGSMITH_ENDPOINT", api.url)
            monkeypatch.setenv("LANGSMITH_API_KEY", "lsv2-fake-key")
            monkeypatch.setenv("LANGSMITH_PROJECT", "wdr-test")
            async with running_service(
                database_url=url,
                redis_url=REDIS_URL,
                cache_prefix=f"wdr-test:{Path(url).name}:",
                data_dir=tmp_path,
            ) as svc:
                spec = {
                    "title": "secret tile",
                    "kind": "table",
                    "mock_data": [{"model": SECRET, "claims": 1}],
                    "data_intent": {
                        "metric_id": "claims_insights",
                        "time_range": "last_30d",
                        "question": "Which models?",
                    },
                }
                assert (await svc.client.put("/v1/widgets/ls-secret", json=spec)).status_code in (
                    200,
                    201,
                )
                body = (await svc.data("ls-secret")).json()
                assert body["data"] == [{"model": SECRET, "claims": 1}]  # the caller sees it
                live = (await svc.data("issues-by-severity", refresh=True)).json()
                assert live["row_count"] > 0
                tracer = svc.app.state.resolver.config["callbacks"][0]
                assert tracer.client.api_url == api.url  # never the public endpoint
                tracer.wait_for_futures()
                tracer.client.flush()
            posted = api.all_bytes()
            assert api.run_posts(), [r.path for r in api.received]
            assert b"ls-secret" in posted and b"degrade_or_return" in posted
            assert SECRET.encode() not in posted
            assert b"rows hidden" in posted
            # a live answer's values do not leave either (its severities are row data)
            for row in live["data"]:
                assert f'"severity": "{row["severity"]}"'.encode() not in posted
    finally:
        drop_database(url)
