"""The compiled graph with test doubles: which nodes run on each path."""

from __future__ import annotations

import asyncio

import pytest

from domain.failures import FailureKind, PostgresFailure, WarehouseFailure
from graph.builder import NODES, build_graph
from graph.context import Context
from tests.support.doubles import StubGateway, StubLLM, StubWarehouse, as_state
from tests.support.doubles import make_ctx as ctx

GRAPH = build_graph().compile()


async def resolve(c: Context, widget_id: str, **flags: bool) -> tuple[dict, list[str]]:
    out = await GRAPH.ainvoke(as_state({"widget_id": widget_id}, flags), context=c)
    return out["response"], [t["node"] for t in out["trace"]]


def test_graph_has_the_named_nodes() -> None:
    assert set(NODES) <= set(GRAPH.get_graph().nodes)


async def test_postgres_path_then_cache_hit_path_is_short() -> None:
    c = ctx()
    r, nodes = await resolve(c, "open-issues-kpi")
    assert nodes == ["route", "cache_lookup", "postgres_query", "degrade_or_return"]
    assert r["source"] == "postgres" and r["cache_hit"] is False
    r, nodes = await resolve(c, "open-issues-kpi")
    assert nodes == ["route", "cache_lookup", "degrade_or_return"]
    assert r["cache_hit"] is True
    r, nodes = await resolve(c, "open-issues-kpi", refresh=True)
    assert r["cache_hit"] is False and "postgres_query" in nodes


async def test_warehouse_path() -> None:
    wh = StubWarehouse()
    r, nodes = await resolve(ctx(warehouse=wh), "claims-filed-by-region")
    assert nodes == [
        "route",
        "cache_lookup",
        "sql_generate",
        "safety_check",
        "databricks_execute",
        "degrade_or_return",
    ]
    assert (
        r["source"] == "databricks"
        and r["backend"] == "databricks"
        and r["generated_sql"] == wh.executed[0]
    )


async def test_dry_run_executes_nothing() -> None:
    wh = StubWarehouse()
    c = ctx(warehouse=wh)
    r, nodes = await resolve(c, "claims-filed-by-region", dry_run=True)
    assert "databricks_execute" not in nodes and wh.executed == []
    assert r["executed"] is False and r["dry_run"] is True and r["generated_sql"]
    r2, _ = await resolve(c, "claims-filed-by-region")
    assert r2["cache_hit"] is False  # the dry run cached nothing


@pytest.mark.parametrize(
    "kw, widget, kind",
    [
        (
            {
                "postgres": StubGateway(
                    error=PostgresFailure("x", kind=FailureKind.postgres_unavailable)
                )
            },
            "open-issues-kpi",
            "postgres_unavailable",
        ),
        (
            {
                "warehouse": StubWarehouse(
                    error=WarehouseFailure("x", kind=FailureKind.databricks_auth)
                )
            },
            "claims-filed-by-region",
            "databricks_auth",
        ),
        (
            {"llm": StubLLM(sql="DROP TABLE main.claims.devices")},
            "top-claimed-models",
            "safety_violation",
        ),
        ({"llm": None}, "top-claimed-models", "bedrock_unconfigured"),
    ],
)
async def test_failures_degrade_through_mock_data(kw: dict, widget: str, kind: str) -> None:
    c = ctx(**kw)
    r, nodes = await resolve(c, widget)
    assert nodes[-2:] == ["mock_data", "degrade_or_return"]
    assert r["source"] == kind and r["live_data_unavailable"] is True
    assert r["data"] == c.registry.widget(widget).mock_data  # type: ignore[union-attr]
    r2, nodes2 = await resolve(c, widget)
    assert (
        "cache_lookup" in nodes2 and r2["cache_hit"] is False
    )  # degraded answers are never cached


async def test_bound_context_graph_for_studio() -> None:
    c = ctx()
    g = build_graph(bind_context=c).compile()
    out = await g.ainvoke({"widget_id": "open-issues-kpi"})
    assert out["response"]["source"] == "postgres"


class SlowGateway(StubGateway):
    async def run_metric(self, metric, intent, **kw):  # type: ignore[no-untyped-def]
        await asyncio.sleep(5)
        return await super().run_metric(metric, intent, **kw)


async def test_a_node_over_its_deadline_is_the_paths_timeout_and_mock_data() -> None:
    graph = build_graph(node_timeouts={"postgres_query": 0.2}).compile()
    out = await graph.ainvoke({"widget_id": "open-issues-kpi"}, context=ctx(postgres=SlowGateway()))
    r, nodes = out["response"], [t["node"] for t in out["trace"]]
    assert r["source"] == "postgres_timeout" and r["live_data_unavailable"] is True
    assert "node deadline" in r["error_detail"] and r["data"]  # the widget's mock rows
    assert nodes == ["route", "cache_lookup", "postgres_query", "mock_data", "degrade_or_return"]
