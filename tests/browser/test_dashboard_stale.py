"""Stale data never looks current: an answer past its TTL (stale-while-revalidate) and a last
good answer standing in for a cut PostgreSQL both get an amber "Stale" badge with their age
and reason. The service runs with a 10 min TTL and revalidate window on the open-issues
metric; the test backdates its cached answer (`backdate_cached`) instead of waiting for the
wall clock, so a slow machine cannot move it into another window."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from selenium.webdriver.common.by import By

from tests.browser.conftest import DashService, after_test, fresh_tab, serving
from tests.browser.test_dashboard import (
    PG_KPI,
    badge,
    click,
    open_dashboard,
    tile,
    wait_badge,
    wait_for,
    words,
)
from tests.support.servers import copy_config

pytestmark = pytest.mark.browser
TTL, SWR = 600, 600
AGE = re.compile(r"Stale · \d+ (s|min|h|h \d+ min|d)")  # dashboard.js formatAge


@pytest.fixture(scope="module")
def stale_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashService]:
    tmp = tmp_path_factory.mktemp("stale")
    config = copy_config(tmp)
    routing_file = config / "metric_routing.yaml"
    routing = yaml.safe_load(routing_file.read_text())
    routing["metrics"]["active_issues_count"] |= {
        "ttl_seconds": TTL,
        "stale_while_revalidate_seconds": SWR,
        "stale_if_error_seconds": 3600,
    }
    routing_file.write_text(yaml.safe_dump(routing))
    # refresh-ahead off: this test needs entries that really expire
    with serving(tmp, CONFIG_DIR=str(config), REFRESH_AHEAD="false") as svc:
        yield svc


@pytest.fixture
def stale_page(driver: Any, stale_service: DashService, request: pytest.FixtureRequest) -> Any:
    fresh_tab(driver)
    yield driver
    after_test(driver, request)


def reload_tiles(drv: Any) -> None:
    click(drv, drv.find_element(By.CSS_SELECTOR, '[data-testid="reload-all"]'))
    wait_for(drv, lambda d: tile(d, PG_KPI).get_attribute("aria-busy") == "false", 30)


def reloaded_until(drv: Any, statuses: set[str], what: str) -> None:
    """Reload the tiles until the open-issues badge is in `statuses` (a background refresh
    lands when it lands)."""

    def ok(d: Any) -> bool:
        reload_tiles(d)
        return badge(d, PG_KPI).get_attribute("data-status") in statuses

    wait_for(drv, ok, 60, what)


def test_stale_answers_are_amber_with_age_and_reason(
    stale_page: Any, stale_service: DashService
) -> None:
    page = stale_page
    open_dashboard(page, stale_service)
    assert badge(page, PG_KPI).get_attribute("data-status") == "live"
    # the badge can show the answer a moment before its cache write lands: wait for it
    wait_for(page, lambda d: stale_service.backdate_cached(PG_KPI, TTL + 1) >= 1, 30, "cached")
    # past its TTL, inside the revalidate window: served at once, flagged, refreshed behind
    reload_tiles(page)
    b = wait_badge(page, PG_KPI, "stale")
    assert AGE.fullmatch(words(b)), words(b)
    kind = tile(page, PG_KPI).find_element(By.CSS_SELECTOR, '[data-testid="failure-kind"]')
    assert kind.text == "revalidating"
    t = tile(page, PG_KPI)
    assert "is-stale" in t.get_attribute("class") and "is-degraded" in t.get_attribute("class")
    border = page.execute_script("return getComputedStyle(arguments[0]).borderTopColor", t)
    assert border == "rgb(217, 119, 6)", border  # amber
    count = page.find_element(By.CSS_SELECTOR, '[data-testid="sum-stale"]')
    assert int(count.get_attribute("data-count")) >= 1
    # the background refresh lands: fresh again
    reloaded_until(page, {"cached", "live"}, "the background refresh's answer")
    # PostgreSQL cut, the entry past TTL + revalidate window: the last good answer, flagged
    stale_service.proxy.stop()
    try:
        wait_for(
            page,
            lambda d: stale_service.backdate_cached(PG_KPI, TTL + SWR + 1) >= 1,
            30,
            "cached",
        )
        reload_tiles(page)
        b = wait_badge(page, PG_KPI, "fallback")
        assert words(b).endswith(" · live data unavailable"), words(b)
        assert AGE.fullmatch(words(b).removesuffix(" · live data unavailable")), words(b)
        kind = tile(page, PG_KPI).find_element(By.CSS_SELECTOR, '[data-testid="failure-kind"]')
        assert kind.text == "postgres_unavailable"
        tip = tile(page, PG_KPI).find_element(By.CSS_SELECTOR, ".tip")
        page.execute_script("arguments[0].focus()", b)
        wait_for(page, lambda d: tip.is_displayed(), 5)
        assert "last good answer" in tip.text and "postgres_unavailable" in tip.text
        # real (old) numbers: no MOCK DATA watermark
        assert not tile(page, PG_KPI).find_element(By.CSS_SELECTOR, ".mock-mark").is_displayed()
    finally:
        stale_service.proxy.start()
