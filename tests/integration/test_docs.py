"""Generated docs stay in step with the code."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from domain.models import WidgetSpec
from service.app import create_app
from service.cli import graph_mermaid
from service.settings import Settings
from tests.support.servers import RESPONSE_FIELDS

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


def _shell_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_readme_examples_send_files_that_exist_and_never_start_a_second_server() -> None:
    """The README's examples work when pasted in order (each was run against `make run`)."""
    readme = (ROOT / "README.md").read_text()
    blocks = _shell_blocks(readme)
    sent = [p for block in blocks for p in re.findall(r"-d @(\S+)", block)]
    assert sent, "the identity example sends a widget spec"
    for path in sent:
        assert (ROOT / path).is_file(), f"README sends -d @{path}: no such file in the repo"
        WidgetSpec.model_validate_json((ROOT / path).read_text())  # what PUT takes
    # `make run` runs in the foreground of its own terminal; a block that starts the service
    # in the background must stop it again (the next one, or the user's, takes its port)
    for block in blocks:
        assert "make run &" not in block, block
        if re.search(r"resolver serve &", block):
            assert "kill %1" in block, block


def test_readme_shows_the_refresh_debounce_where_its_example_is() -> None:
    readme = (ROOT / "README.md").read_text()
    try_it = readme.split("## Try it", 1)[1].split("\n## ", 1)[0]
    assert '{"refresh": true}' in try_it and ".refresh_debounced" in try_it
    assert "refresh_retry_after_s" in try_it and "REFRESH_MIN_INTERVAL_S" in try_it
