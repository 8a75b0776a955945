"""The dashboard with identity on (AUTH_JWT_SECRET): it asks for a token on a 401, keeps it in
the tab's session storage only, sends it as a bearer token, and explains 401/403 in plain
words. Row filters of the token's claims show on the page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from selenium.webdriver.common.by import By

from tests.browser.conftest import DashService, after_test, fresh_tab, network_requests, serving
from tests.browser.test_dashboard import badge, click, settled, tile, wait_badge, wait_for, words

pytestmark = pytest.mark.browser
SECRET = "browser-suite-secret-0123456789abcdef"
READ = "data:read widgets:read metrics:read"
# Chromium logs every 401/403 answer to fetch() as a console error: those are expected here.
EXPECTED = ("status of 401", "status of 403")
DEBOUNCE_S = 24 * 3600


@pytest.fixture(scope="module")
def auth_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashService]:
    with serving(
        tmp_path_factory.mktemp("auth"),
        AUTH_JWT_SECRET=SECRET,
        # the forced-refresh debounce outlasts any sign-in and tile loading, however slow
        # the machine: the refresh below is always debounced
        REFRESH_MIN_INTERVAL_S=str(DEBOUNCE_S),
    ) as svc:
        yield svc


@pytest.fixture
def auth_page(driver: Any, auth_service: DashService, request: pytest.FixtureRequest) -> Any:
    fresh_tab(driver)
    yield driver
    after_test(driver, request, allowed=EXPECTED)


def sign_in(drv: Any, token: str) -> None:
    dialog = drv.find_element(By.CSS_SELECTOR, '[data-testid="auth-dialog"]')
    wait_for(drv, lambda d: dialog.is_displayed(), 10, "the sign-in dialog")
    dialog.find_element(By.ID, "auth-token").send_keys(token)
    dialog.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def test_asks_for_a_token_and_uses_it_from_session_storage_only(
    auth_page: Any, auth_service: DashService
) -> None:
    auth_page.get(auth_service.base + "/")
    dialog = auth_page.find_element(By.CSS_SELECTOR, '[data-testid="auth-dialog"]')
    wait_for(auth_page, lambda d: dialog.is_displayed(), 10, "the sign-in dialog")
    reason = dialog.find_element(By.ID, "auth-reason").text
    assert "needs you to sign in" in reason, reason
    assert not auth_page.find_elements(By.CSS_SELECTOR, '[data-testid="tile"]')
    token = auth_service.mint(READ, "regions=west,northeast")
    sign_in(auth_page, token)
    wait_for(auth_page, settled, 60, "tiles after signing in")
    assert auth_page.execute_script("return sessionStorage.getItem('wdr.token')") == token
    stored = auth_page.execute_script("return JSON.stringify(localStorage)")
    assert token not in stored and token not in auth_page.execute_script("return document.cookie")
    sent = [r for r in network_requests(auth_page) if "/v1/widgets/data" in r["url"]]
    assert sent and all(r["headers"].get("Authorization") == f"Bearer {token}" for r in sent)
    widgets = auth_service.widgets({"Authorization": f"Bearer {token}"})
    assert len(auth_page.find_elements(By.CSS_SELECTOR, '[data-testid="tile"]')) == len(widgets)
    # the token's regions claim filters the rows: only west and northeast on the region chart
    chart = tile(auth_page, "claims-filed-by-region").find_element(
        By.CSS_SELECTOR, '[data-testid="chart"]'
    )
    label = chart.get_attribute("aria-label") or ""
    assert "west:" in label and "northeast:" in label, label
    assert "southeast" not in label and "midwest" not in label, label
    assert words(badge(auth_page, "claims-filed-by-region")).startswith("Live")
    # a forced refresh right after a live answer is debounced (a day here): the page says so.
    # The badge can show the answer a moment before its cache write lands: wait for it (a
    # refresh finding no entry would be live, however long the debounce)
    wait_for(auth_page, lambda d: auth_service.cached("open-issues-kpi") >= 1, 30, "cached")
    click(
        auth_page, tile(auth_page, "open-issues-kpi").find_element(By.CSS_SELECTOR, ".refresh-btn")
    )
    b = wait_badge(auth_page, "open-issues-kpi", "cached", timeout=60)
    kind = tile(auth_page, "open-issues-kpi").find_element(
        By.CSS_SELECTOR, '[data-testid="failure-kind"]'
    )
    assert kind.text == "refresh_debounced"
    tip = tile(auth_page, "open-issues-kpi").find_element(By.CSS_SELECTOR, ".tip")
    auth_page.execute_script("arguments[0].focus()", b)
    wait_for(auth_page, lambda d: tip.is_displayed(), 5)
    assert "reused that answer" in tip.text, tip.text


def test_a_bad_token_and_a_missing_scope_are_explained_in_plain_words(
    auth_page: Any, auth_service: DashService
) -> None:
    auth_page.get(auth_service.base + "/")
    sign_in(auth_page, "not-a-token")
    dialog = auth_page.find_element(By.CSS_SELECTOR, '[data-testid="auth-dialog"]')
    wait_for(auth_page, lambda d: dialog.is_displayed(), 10, "asked again")
    reason = dialog.find_element(By.ID, "auth-reason").text
    assert "was not accepted" in reason and "The service said" in reason, reason
    # widgets and metrics may be listed, but data may not be read
    sign_in(auth_page, auth_service.mint("widgets:read metrics:read"))
    wait_for(auth_page, settled, 60)
    notice = auth_page.find_element(By.CSS_SELECTOR, '[data-testid="notice"]')
    wait_for(auth_page, lambda d: notice.is_displayed(), 10)
    assert "does not allow this" in notice.text and "data:read" in notice.text, notice.text
    b = badge(auth_page, "open-issues-kpi")
    assert b.get_attribute("data-status") == "error" and words(b) == "Not allowed"
    # forgetting the token removes it from the tab
    auth_page.find_element(By.CSS_SELECTOR, '[data-testid="sign-out"]').click()
    assert auth_page.execute_script("return sessionStorage.getItem('wdr.token')") is None
