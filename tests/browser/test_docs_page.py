"""Issue 18: `/docs` is Swagger UI served by the service itself (from the
swagger-ui-bundle-v2 package), in headless Chromium under the dashboard's
Content-Security-Policy: it renders the API's operations, the browser reports no CSP
violation, and every request the page sends goes to the service's own origin."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.conftest import DashService, console_errors, network_requests

pytestmark = pytest.mark.browser


def test_docs_render_from_this_origin_under_the_csp(driver: Any, dash_service: DashService) -> None:
    driver.get_log("browser")  # start from a clean log
    network_requests(driver)
    driver.get(dash_service.base + "/docs")

    def operations(d: Any) -> list[Any]:
        return list(d.find_elements(By.CSS_SELECTOR, ".swagger-ui .opblock"))

    found = WebDriverWait(driver, 60, poll_frequency=0.1).until(operations, "operations listed")
    assert len(found) >= 10
    title = driver.find_element(By.CSS_SELECTOR, ".swagger-ui .info .title").text
    assert "Widget data resolver" in title
    errors = console_errors(driver)
    assert not errors, errors  # a CSP violation is a console error ("Refused to ...")
    origin = urlsplit(dash_service.base).netloc
    hosts = {urlsplit(r["url"]).netloc for r in network_requests(driver)}
    hosts.discard("")  # data: URLs (Swagger UI's icons)
    assert hosts == {origin}, hosts
