"""The dashboard page in headless Chromium, against the real service (real PostgreSQL through
a TCP proxy, real Redis, the embedded DuckDB warehouse, no LLM configured)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.conftest import ARTIFACTS, DashService, console_errors, network_requests

pytestmark = pytest.mark.browser
T = TypeVar("T")

PG_KPI = "open-issues-kpi"  # a Postgres widget
WAREHOUSE_BAR = "claims-filed-by-region"  # a warehouse (compiled SQL) widget


def wait_for(drv: Any, cond: Callable[[Any], T], timeout: float = 20, what: str = "") -> T:
    return WebDriverWait(drv, timeout, poll_frequency=0.1).until(cond, what)  # type: ignore[no-any-return]


def tile(drv: Any, widget_id: str) -> WebElement:
    return drv.find_element(By.CSS_SELECTOR, f'[data-testid="tile"][data-widget-id="{widget_id}"]')


def badge(drv: Any, widget_id: str) -> WebElement:
    return tile(drv, widget_id).find_element(By.CSS_SELECTOR, '[data-testid="badge"]')


def words(b: WebElement) -> str:
    """A badge's words (without its icon)."""
    return str(b.find_element(By.CSS_SELECTOR, ".badge-text").text)


def settled(drv: Any) -> bool:
    """Every tile has an answer (or an error) and none is loading."""
    return bool(
        drv.execute_script(
            """const tiles = [...document.querySelectorAll('[data-testid=tile]')];
               return tiles.length > 0 && tiles.every(t => t.dataset.status &&
                 t.dataset.status !== 'loading' && t.getAttribute('aria-busy') === 'false');"""
        )
    )


def open_dashboard(drv: Any, svc: DashService, query: str = "") -> None:
    drv.get(svc.base + "/" + query)
    wait_for(drv, settled, 60, "every tile resolved")


def wait_badge(drv: Any, widget_id: str, status: str, timeout: float = 20) -> WebElement:
    def ok(d: Any) -> WebElement | bool:
        b = badge(d, widget_id)
        return b if b.get_attribute("data-status") == status else False

    try:
        found = wait_for(drv, ok, timeout, f"{widget_id} badge {status}")
        assert isinstance(found, WebElement)
        return found
    except Exception:
        b = badge(drv, widget_id)
        raise AssertionError(
            f"{widget_id}: badge is {b.get_attribute('data-status')!r} ({b.text!r}), not {status!r}"
        ) from None


def click(drv: Any, el: WebElement) -> None:
    drv.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
    el.click()


# --------------------------------------------------------------------------------- the tests


def test_every_demo_widget_renders_with_an_honest_badge(
    page: Any, dash_service: DashService
) -> None:
    widgets = {w["id"]: w["spec"] for w in dash_service.widgets()}
    assert len(widgets) >= 10
    open_dashboard(page, dash_service)
    tiles = page.find_elements(By.CSS_SELECTOR, '[data-testid="tile"]')
    assert {t.get_attribute("data-widget-id") for t in tiles} == set(widgets)
    for t in tiles:
        wid = t.get_attribute("data-widget-id")
        kind = widgets[wid]["kind"]
        b = t.find_element(By.CSS_SELECTOR, '[data-testid="badge"]')
        status = b.get_attribute("data-status")
        assert status in {"live", "cached", "mock"}, (wid, status, b.text)
        assert words(b).strip(), wid  # words, not colour alone
        assert b.get_attribute("aria-label").startswith("Data source: "), wid
        if kind == "kpi":
            assert t.find_element(By.CSS_SELECTOR, '[data-testid="kpi-value"]').text.strip()
        elif kind == "table":
            rows = t.find_elements(By.CSS_SELECTOR, '[data-testid="data-table"] tbody tr')
            assert rows, wid
        else:
            chart = t.find_element(By.CSS_SELECTOR, '[data-testid="chart"]')
            assert chart.find_elements(By.TAG_NAME, "canvas"), wid  # drawn by ECharts
            assert chart.size["height"] > 100 and chart.size["width"] > 200, (wid, chart.size)
            assert chart.get_attribute("aria-label").startswith(f"{kind} chart"), wid
    # no LLM configured: the question widget is a mock, flagged with its failure kind
    qb = badge(page, "top-claimed-models")
    assert qb.get_attribute("data-status") == "mock"
    assert words(qb) == "Mock · live data unavailable"
    kind = tile(page, "top-claimed-models").find_element(
        By.CSS_SELECTOR, '[data-testid="failure-kind"]'
    )
    assert kind.text == "bedrock_unconfigured"
    # everything else is real data
    for wid in set(widgets) - {"top-claimed-models"}:
        assert badge(page, wid).get_attribute("data-status") in {"live", "cached"}, wid
    # the dashboard-level line adds up
    counts = {
        k: int(
            page.find_element(By.CSS_SELECTOR, f'[data-testid="sum-{k}"]').get_attribute(
                "data-count"
            )
        )
        for k in ("live", "cached", "stale", "degraded")
    }
    assert sum(counts.values()) == len(widgets) and counts["degraded"] == 1, counts
    summary = page.find_element(By.CSS_SELECTOR, '[data-testid="summary"]').text
    assert f"{len(widgets)} tiles" in summary and "1 degraded" in summary


def test_postgres_widget_is_live_then_cached_after_a_reload(
    page: Any, dash_service: DashService
) -> None:
    open_dashboard(page, dash_service)
    click(page, tile(page, PG_KPI).find_element(By.CSS_SELECTOR, ".refresh-btn"))
    b = wait_badge(page, PG_KPI, "live")
    assert words(b) == "Live · PostgreSQL"
    page.refresh()
    wait_for(page, settled, 60)
    b = wait_badge(page, PG_KPI, "cached")
    assert re.fullmatch(r"Cached · \d+ (s|min)", words(b)), words(b)  # its age
    assert "is-cached" in (tile(page, PG_KPI).get_attribute("class") or "")


def test_cut_postgres_turns_its_tile_amber_with_the_reason_and_it_recovers_by_itself(
    page: Any, dash_service: DashService
) -> None:
    open_dashboard(page, dash_service, "?auto=2")  # auto-refresh every 2 s
    assert badge(page, PG_KPI).get_attribute("data-status") in {"live", "cached"}
    dash_service.proxy.stop()
    try:
        dash_service.forget_cached(PG_KPI)  # as if its cache entry had expired
        b = wait_badge(page, PG_KPI, "mock", timeout=30)  # no click: auto-refresh found it
        t = tile(page, PG_KPI)
        assert words(b) == "Mock · live data unavailable"
        assert t.find_element(By.CSS_SELECTOR, '[data-testid="failure-kind"]').text == (
            "postgres_unavailable"
        )
        assert "is-mock" in (t.get_attribute("class") or "") and "is-degraded" in (
            t.get_attribute("class") or ""
        )
        border = page.execute_script("return getComputedStyle(arguments[0]).borderTopColor", t)
        assert border == "rgb(234, 88, 12)", border  # amber, not the live green
        # the error detail on hover, and on keyboard focus
        tip = t.find_element(By.CSS_SELECTOR, ".tip")
        ActionChains(page).move_to_element(b).perform()
        wait_for(page, lambda d: tip.is_displayed(), 5, "tooltip on hover")
        assert "postgres_unavailable" in tip.text and "sample" in tip.text
        ActionChains(page).move_by_offset(0, 300).perform()
        page.execute_script("arguments[0].focus()", b)
        wait_for(page, lambda d: tip.is_displayed(), 5, "tooltip on focus")
        assert b.get_attribute("aria-describedby") == tip.get_attribute("id")
        summary = page.find_element(By.CSS_SELECTOR, '[data-testid="sum-degraded"]')
        assert int(summary.get_attribute("data-count")) >= 2  # this tile and the LLM one
        # a user's refresh during the outage is a flagged mock too, never an error
        network_requests(page)  # forget the requests so far
        click(page, t.find_element(By.CSS_SELECTOR, ".refresh-btn"))
        sent: list[dict[str, Any]] = []

        def refresh_answered(d: Any) -> bool:  # its request went out, and its answer is in
            sent.extend(r for r in network_requests(d) if f"/v1/widgets/{PG_KPI}/data" in r["url"])
            return bool(sent) and tile(d, PG_KPI).get_attribute("aria-busy") == "false"

        wait_for(page, refresh_answered, 30, "the refresh's answer")
        wait_badge(page, PG_KPI, "mock")
    finally:
        dash_service.proxy.start()
    back = time.monotonic()
    # PostgreSQL is back: the tile shows real data again on its own (degraded answers are
    # never cached). The viewer's own resolution shows it live; a background refresh may win
    # that race (refresh-ahead retries a tracked key), and then it is a cached answer
    # resolved after PostgreSQL came back.

    def recovered(d: Any) -> WebElement | bool:
        b = badge(d, PG_KPI)
        return b if b.get_attribute("data-status") in {"live", "cached"} else False

    shown = wait_for(page, recovered, 45, f"{PG_KPI} shows real data again")
    assert isinstance(shown, WebElement)
    b = shown
    text = words(b)
    if b.get_attribute("data-status") == "live":
        assert text == "Live · PostgreSQL"
    else:
        age = int(text.removeprefix("Cached · ").removesuffix(" s"))
        assert age <= time.monotonic() - back + 1, text
    assert "is-mock" not in (tile(page, PG_KPI).get_attribute("class") or "")


CHART_AXES_JS = """
const tile = document.querySelector('[data-testid=tile][data-widget-id="' + arguments[0] + '"]');
const chart = echarts.getInstanceByDom(tile.querySelector('[data-testid=chart]'));
const o = chart.getOption();
const axis = o.xAxis[0].type === 'category' ? o.xAxis[0] : o.yAxis[0];
const x = o.xAxis[0];
const ticks = (x.axisLabel && x.axisLabel.customValues) || [];
return {
  type: x.type,
  points: o.series[0].data.map((p) => p[0]),
  ticks: ticks,
  labels: ticks.map((t) => x.axisLabel.formatter(t)),
  categories: axis.data || [],
};
"""


def chart_axes(drv: Any, widget_id: str) -> dict[str, Any]:
    out: dict[str, Any] = drv.execute_script(CHART_AXES_JS, widget_id)
    return out


def test_weekly_ticks_fall_on_its_points_and_name_every_month(
    page: Any, dash_service: DashService
) -> None:
    open_dashboard(page, dash_service)
    axes = chart_axes(page, "claims-paid-weekly")
    assert axes["type"] == "time" and axes["ticks"], axes
    points = [datetime.fromtimestamp(p / 1000, UTC) for p in axes["points"]]
    ticks = [datetime.fromtimestamp(t / 1000, UTC) for t in axes["ticks"]]
    assert set(axes["ticks"]) <= set(axes["points"]), axes  # on the data's own points
    assert all(t.weekday() == 0 for t in ticks), ticks  # weekly buckets start on Mondays
    assert len(ticks) <= 8 and ticks[-1] == max(points), axes  # no crowding; the latest
    months = {t.strftime("%b") for t in ticks}
    named = [label.split()[0] for label in axes["labels"] if not label.isdigit()]
    assert set(named) == months, axes["labels"]  # every month shown is named, once
    assert len(named) == len(set(named)), axes["labels"]


def test_bars_over_severity_keep_its_natural_order(page: Any, dash_service: DashService) -> None:
    open_dashboard(page, dash_service)
    order = ["critical", "high", "medium", "low"]
    metrics = {m["name"]: m for m in httpx.get(dash_service.base + "/v1/metrics").json()["metrics"]}
    assert metrics["active_issues_count"]["dimension_order"] == {"severity": order}
    shown = chart_axes(page, "issues-by-severity")["categories"]
    assert [c for c in shown if c in order] in (order, order[::-1]), shown  # (reversed: rows)
    tile_el = tile(page, "issues-by-severity").find_element(
        By.CSS_SELECTOR, '[data-testid="chart"]'
    )
    horizontal = page.execute_script(
        "return echarts.getInstanceByDom(arguments[0]).getOption().yAxis[0].type === 'category'",
        tile_el,
    )
    assert shown == (order[::-1] if horizontal else order), shown  # top-down / left-right


def test_sql_view_shows_the_warehouse_query_formatted_and_copyable(
    page: Any, dash_service: DashService
) -> None:
    open_dashboard(page, dash_service)
    click(page, tile(page, WAREHOUSE_BAR).find_element(By.CSS_SELECTOR, ".sql-btn"))
    dialog = page.find_element(By.CSS_SELECTOR, '[data-testid="detail-dialog"]')
    wait_for(page, lambda d: dialog.is_displayed(), 5)
    sql = dialog.find_element(By.CSS_SELECTOR, '[data-testid="sql-text"]').text
    assert "FROM main.claims.claim_events" in sql
    assert "GROUP BY region" in sql.replace("  ", " ")
    assert "\nWHERE " in sql and "\n  AND " in sql  # one clause per line
    assert "event_type = 'filed'" in sql
    # the SQL the service reported, formatted but not changed (same tokens)
    reported = httpx.post(f"{dash_service.base}/v1/widgets/{WAREHOUSE_BAR}/data").json()[
        "generated_sql"
    ]
    assert (
        sql.split()
        == page.execute_script("return window.dashboard.formatSql(arguments[0])", reported).split()
    )
    assert "Databricks SQL" in dialog.find_element(By.ID, "detail-sub").text
    copy = dialog.find_element(By.ID, "detail-copy")
    assert copy.is_displayed()
    click(page, copy)
    wait_for(page, lambda d: d.find_element(By.ID, "detail-status").text.strip(), 5)
    dialog.find_element(By.CSS_SELECTOR, ".close-btn").click()
    wait_for(page, lambda d: not dialog.is_displayed(), 5)


def test_refresh_sends_refresh_true_and_plain_loads_do_not(
    page: Any, dash_service: DashService
) -> None:
    open_dashboard(page, dash_service)
    first = [r for r in network_requests(page) if r["url"].endswith("/v1/widgets/data?trace=true")]
    assert len(first) == 1, "one batch round trip for the whole dashboard"
    body = json.loads(first[0]["postData"])
    assert len(body["widget_ids"]) == len(dash_service.widgets()) and "refresh" not in body
    click(page, tile(page, WAREHOUSE_BAR).find_element(By.CSS_SELECTOR, ".refresh-btn"))
    wait_badge(page, WAREHOUSE_BAR, "live")
    sent = [r for r in network_requests(page) if f"/v1/widgets/{WAREHOUSE_BAR}/data" in r["url"]]
    assert len(sent) == 1 and sent[0]["method"] == "POST"
    assert json.loads(sent[0]["postData"]) == {"refresh": True}
    click(page, page.find_element(By.CSS_SELECTOR, '[data-testid="refresh-all"]'))
    wait_for(page, lambda d: any(r["url"].endswith("/v1/widgets/data?trace=true") and json.loads(r["postData"]).get("refresh") is True for r in network_requests(d)), 10)  # fmt: skip
    wait_for(page, settled, 60)
    assert all(
        badge(page, w["id"]).get_attribute("data-status") in {"live", "mock"}
        for w in dash_service.widgets()
    )


def test_trace_view_and_metric_popover(page: Any, dash_service: DashService) -> None:
    open_dashboard(page, dash_service)
    t = tile(page, WAREHOUSE_BAR)
    click(page, t.find_element(By.CSS_SELECTOR, ".trace-btn"))
    dialog = page.find_element(By.CSS_SELECTOR, '[data-testid="detail-dialog"]')
    table = wait_for(
        page,
        lambda d: dialog.find_elements(By.CSS_SELECTOR, '[data-testid="trace-table"]'),
        15,
    )[0]
    nodes = [c.text for c in table.find_elements(By.CSS_SELECTOR, "tbody th code")]
    assert nodes[0] == "route" and "cache_lookup" in nodes and nodes[-1] == "degrade_or_return"
    assert "ms" in table.find_element(By.CSS_SELECTOR, "tfoot").text
    dialog.find_element(By.CSS_SELECTOR, ".close-btn").click()
    # the metric info popover, from GET /v1/metrics
    info = t.find_element(By.CSS_SELECTOR, ".info-btn")
    click(page, info)
    pop = t.find_element(By.CSS_SELECTOR, '[data-testid="metric-popover"]')
    wait_for(page, lambda d: pop.is_displayed(), 5)
    text = pop.text
    assert "Distinct claims filed." in text and "claims-analytics" in text
    assert "Governance" in text and "validated" in text and "Last validated" in text
    assert info.get_attribute("aria-expanded") == "true"
    pop.send_keys(Keys.ESCAPE)
    wait_for(page, lambda d: not pop.is_displayed(), 5)
    assert info.get_attribute("aria-expanded") == "false"


def test_keyboard_reaches_every_control(page: Any, dash_service: DashService) -> None:
    open_dashboard(page, dash_service)
    seen: set[str] = set()
    body = page.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    for _ in range(90):
        label = page.execute_script(
            """const a = document.activeElement; const t = a.closest('[data-testid=tile]');
               return (t ? t.dataset.widgetId + ':' : '') + (a.className || a.id || a.tagName);"""
        )
        seen.add(label)
        page.switch_to.active_element.send_keys(Keys.TAB)
    kpi = [s for s in seen if s.startswith(f"{PG_KPI}:")]
    joined = " ".join(kpi)
    for control in ("info-btn", "badge", "refresh-btn", "sql-btn", "trace-btn"):
        assert control in joined, (control, kpi)
    assert any("auto-refresh" in s or s == "SELECT" for s in seen) or any(
        "refresh-all" in s for s in seen
    )


def test_phone_width_is_one_column_without_horizontal_scroll(
    page: Any, dash_service: DashService
) -> None:
    page.set_window_size(390, 844)
    open_dashboard(page, dash_service)
    width = page.execute_script("return document.documentElement.clientWidth")
    assert page.execute_script("return document.documentElement.scrollWidth") <= width
    lefts = {
        round(t.rect["x"]) for t in page.find_elements(By.CSS_SELECTOR, '[data-testid="tile"]')
    }
    assert len(lefts) == 1, lefts  # one column
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    save_full_page(page, ARTIFACTS / "dashboard-phone.png", 390)


@pytest.mark.parametrize("width", [1200, 1920])
def test_laptop_widths_fill_every_row_of_charts(
    page: Any, dash_service: DashService, width: int
) -> None:
    page.set_window_size(width, 900)
    open_dashboard(page, dash_service)
    rows: dict[int, int] = {}
    for t in page.find_elements(By.CSS_SELECTOR, '#charts [data-testid="tile"]'):
        rows[round(t.rect["y"])] = rows.get(round(t.rect["y"]), 0) + 1
    sizes = [rows[y] for y in sorted(rows)]
    assert sizes[0] >= 2, sizes  # side by side on a laptop
    assert all(n == sizes[0] for n in sizes[:-1]), sizes  # no row left half empty
    kpis = {
        round(t.rect["y"]) for t in page.find_elements(By.CSS_SELECTOR, "#kpis [data-testid=tile]")
    }
    assert len(kpis) == 1  # the key figures in one strip


# Every chart's canvas is as wide as its tile's chart box (ECharts redraws on its
# ResizeObserver after a window resize; a screenshot waits for that, not for a pause).
CHARTS_FIT = """
return [...document.querySelectorAll('[data-testid="chart"]')].every((el) => {
  const canvas = el.querySelector("canvas");
  return canvas && Math.abs(canvas.getBoundingClientRect().width - el.clientWidth) < 1.5;
});
"""


def save_full_page(drv: Any, path: Any, width: int) -> None:
    height = drv.execute_script("return document.documentElement.scrollHeight")
    drv.set_window_size(width, height + 140)
    wait_for(drv, lambda d: d.execute_script(CHARTS_FIT), 30, "charts resized to their tiles")
    drv.save_screenshot(str(path))


def test_screenshot_of_the_page_is_saved(page: Any, dash_service: DashService) -> None:
    """The page as a viewer sees it: most tiles cached, a few just refreshed live, the question
    widget a flagged mock (no LLM here). Saved under tests/browser/artifacts/ (`make
    screenshot` copies it to docs/dashboard.png)."""
    open_dashboard(page, dash_service)
    for wid in (PG_KPI, "claims-paid-weekly", WAREHOUSE_BAR):
        click(page, tile(page, wid).find_element(By.CSS_SELECTOR, ".refresh-btn"))
        wait_badge(page, wid, "live")
    page.execute_script("window.scrollTo(0, 0)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / "dashboard.png"
    save_full_page(page, path, 1440)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000
    assert not console_errors(page)


CONTRAST_JS = """
function lum(rgb) {
  const [r, g, b] = rgb.match(/[\\d.]+/g).slice(0, 3).map(Number).map((c) => {
    c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}
function bg(el) {
  for (; el; el = el.parentElement) {
    const c = getComputedStyle(el).backgroundColor;
    if (c && !c.startsWith('rgba(0, 0, 0, 0)') && c !== 'transparent') return c;
  }
  return 'rgb(255, 255, 255)';
}
return [...document.querySelectorAll(arguments[0])].filter((el) => el.offsetParent).map((el) => {
  const a = lum(getComputedStyle(el).color), b = lum(bg(el));
  return [el.className || el.tagName, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)];
});
"""


def test_badges_and_text_have_readable_contrast(page: Any, dash_service: DashService) -> None:
    """WCAG AA: 4.5:1 for the badges, failure kinds, titles, footers and summary."""
    open_dashboard(page, dash_service)
    selectors = (
        ".badge-text, .badge-kind, .tile-title, .meta, .kpi-value, .kpi-unit, .kpi-range, "
        "#summary .sum, .updated, .subtitle, .btn, .legend"
    )
    ratios = page.execute_script(CONTRAST_JS, selectors)
    assert len(ratios) > 50
    low = [(name, round(r, 2)) for name, r in ratios if r < 4.5]
    assert not low, low
