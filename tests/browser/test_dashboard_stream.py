"""Slow tiles show their progress from the node event stream
(POST /v1/widgets/{id}/data/stream), which the page finds in the service's OpenAPI document."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from selenium.webdriver.common.by import By

from tests.browser.conftest import DashService, network_requests
from tests.browser.test_dashboard import (
    PG_KPI,
    click,
    open_dashboard,
    settled,
    tile,
    wait_badge,
    wait_for,
    words,
)

pytestmark = pytest.mark.browser
STREAM = f"/v1/widgets/{PG_KPI}/data/stream?trace=true"
BATCH = "/v1/widgets/data?trace=true"


def test_a_slow_tile_shows_node_progress_then_is_streamed_on_its_own(
    page: Any, dash_service: DashService
) -> None:
    open_dashboard(page, dash_service)
    assert page.execute_script("return window.dashboard.features().stream") is True
    network_requests(page)  # forget the first load's requests
    meta = tile(page, PG_KPI).find_element(By.CSS_SELECTOR, ".meta")
    # PostgreSQL on a slow link: ~10 chunks a query, about 2 s (slow; the suite's
    # PG_DEADLINE_S is far above it, so a loaded machine cannot turn it into a timeout)
    dash_service.proxy.latency_s = 0.2
    try:
        click(page, tile(page, PG_KPI).find_element(By.CSS_SELECTOR, ".refresh-btn"))
        progress = wait_for(
            page, lambda d: "✓" in meta.text and meta.text, 15, "node events on the tile"
        )
        assert isinstance(progress, str)
        assert " step" in progress and progress.endswith(" s"), progress
        b = wait_badge(page, PG_KPI, "live", timeout=40)
    finally:
        dash_service.proxy.latency_s = 0.0
    assert words(b) == "Live · PostgreSQL"
    wait_for(page, lambda d: "✓" not in meta.text, 10, "progress cleared")
    took = re.search(r"(\d+) ms", meta.text)
    assert took and int(took.group(1)) > 1000, meta.text  # slow, per its streamed trace
    sent = [r for r in network_requests(page) if r["url"].endswith(STREAM)]
    assert len(sent) == 1 and json.loads(sent[0]["postData"]) == {"refresh": True}
    # the trace view shows the streamed nodes
    click(page, tile(page, PG_KPI).find_element(By.CSS_SELECTOR, ".trace-btn"))
    dialog = page.find_element(By.CSS_SELECTOR, '[data-testid="detail-dialog"]')
    nodes = [
        c.text
        for c in wait_for(
            page, lambda d: dialog.find_elements(By.CSS_SELECTOR, "tbody th code"), 10
        )
    ]
    assert "postgres_query" in nodes, nodes
    dialog.find_element(By.CSS_SELECTOR, ".close-btn").click()
    # it was slow: the next load streams it alone, every other tile still comes in one batch
    click(page, page.find_element(By.CSS_SELECTOR, '[data-testid="reload-all"]'))
    wait_for(page, settled, 60)
    reqs = network_requests(page)
    batches = [json.loads(r["postData"])["widget_ids"] for r in reqs if r["url"].endswith(BATCH)]
    assert len(batches) == 1 and PG_KPI not in batches[0] and len(batches[0]) >= 10
    assert [r for r in reqs if r["url"].endswith(STREAM)]
