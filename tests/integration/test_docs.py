"""Generated docs stay in step with the code."""

from __future__ import annotations

from pathlib import Path

import yaml

from service.app import create_app
from service.cli import graph_mermaid
from service.settings import Settings
from tests.helpers import RESPONSE_FIELDS

ROOT = Path(__file__).resolve().parents[2]


def test_openapi_document_is_current() -> None:
    committed = yaml.safe_load((ROOT / "docs/api/openapi.yaml").read_text())
    assert committed == create_app(Settings()).openapi(), (
        "docs/api/openapi.yaml is stale: run `make openapi`"
    )


def test_graph_drawing_is_current() -> None:
    assert graph_mermaid() in (ROOT / "docs/graph.md").read_text(), (
        "docs/graph.md is stale: run `make graph`"
    )


def test_openapi_documents_the_contract() -> None:
    doc = create_app(Settings()).openapi()
    op = doc["paths"]["/v1/widgets/{widget_id}/data"]["post"]
    assert "application/problem+json" in op["responses"]["404"]["content"]
    props = doc["components"]["schemas"]["ResolveResponse"]["properties"]
    assert set(props) == RESPONSE_FIELDS | {"trace"}
    assert {"stale", "stale_reason", "freshness_seconds"} <= set(props)  # issue 11
    assert "revalidating" in props["stale_reason"]["description"]
