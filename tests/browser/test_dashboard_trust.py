"""The trust of a question's answer on its tile: a question a catalog metric answers shows
"From metric", the demo question the model wrote SQL for shows "AI-written · unverified"
(dashed, amber), a question an owner verified shows "Verified" (and who verified it), and a
widget without a question shows no trust mark. The service runs
`resolver serve` with its model behind the local Converse API server (grounding turns
answered with toolUse blocks by question)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from selenium.webdriver.common.by import By

from fakes.bedrock_converse import (
    MODEL_ID,
    NO_METRIC,
    ConverseServer,
    IntentCall,
    RecordedRequest,
    Reply,
    ToolCall,
)
from tests.browser.conftest import DashService, after_test, fresh_tab, serving
from tests.browser.test_dashboard import open_dashboard, tile
from tests.support.servers import FAKE_AWS_ENV, copy_config

pytestmark = pytest.mark.browser

ASKED = "q-claims-by-region"
QUESTION = "How many claims were filed in each region in the last 30 days?"
VERIFIED = "q-claims-verified"
REGION_SQL = "SELECT region, count(*) AS n FROM main.claims.claim_events GROUP BY region"
MODEL_SQL = (
    "SELECT d.model, count(DISTINCT e.claim_id) AS claims FROM main.claims.claim_events e "
    "JOIN main.claims.devices d ON e.device_id = d.device_id WHERE e.event_type = 'filed' "
    "GROUP BY d.model ORDER BY claims DESC LIMIT 5"
)


def grounding(req: RecordedRequest) -> Reply:
    if "each region" in req.user_text:
        return IntentCall(metric_id="claims_filed_count", dimensions=("region",))
    return NO_METRIC


@pytest.fixture(scope="module")
def trust_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashService]:
    tmp = tmp_path_factory.mktemp("trust")
    config = copy_config(tmp)
    widgets_file = config / "widgets.yaml"
    widgets = yaml.safe_load(widgets_file.read_text())
    widgets["widgets"][ASKED] = {
        "title": "Claims filed by region (asked)",
        "kind": "bar",
        "data_intent": {"metric_id": "claims_insights", "question": QUESTION},
        "mock_data": [{"region": "mock", "value": 1}],
    }
    widgets["widgets"][VERIFIED] = {
        "title": "Claim events per region (verified)",
        "kind": "bar",
        "data_intent": {"metric_id": "claims_insights", "question": "Claim events per region?"},
        "mock_data": [{"region": "mock", "n": 1}],
    }
    widgets_file.write_text(yaml.safe_dump(widgets))
    with ConverseServer(default=ToolCall(sql=MODEL_SQL)) as converse:
        converse.intent_responder = grounding
        env = FAKE_AWS_ENV | {
            "CONFIG_DIR": str(config),
            "BEDROCK_MODEL_ID": MODEL_ID,
            "BEDROCK_ENDPOINT_URL": converse.url,
        }
        with serving(tmp, **env) as svc:
            yield svc


@pytest.fixture
def trust_page(driver: Any, trust_service: DashService, request: pytest.FixtureRequest) -> Any:
    fresh_tab(driver)
    yield driver
    after_test(driver, request)


def trust_mark(drv: Any, widget_id: str) -> Any:
    return tile(drv, widget_id).find_element(By.CSS_SELECTOR, '[data-testid="trust"]')


def test_trust_marks_tell_model_answers_from_metric_answers(
    trust_page: Any, trust_service: DashService
) -> None:
    page = trust_page
    open_dashboard(page, trust_service)
    grounded = trust_mark(page, ASKED)
    assert grounded.is_displayed(), grounded.get_attribute("outerHTML")
    assert grounded.get_attribute("data-trust") == "compiled_from_metric"
    assert grounded.text == "◆ From metric"
    model = trust_mark(page, "top-claimed-models")
    assert model.is_displayed() and model.get_attribute("data-trust") == "model_written_unverified"
    assert model.text == "⚠ AI-written · unverified"
    assert "unverified" in (model.get_attribute("aria-label") or "")
    # never the same look: another class, a dashed border
    assert grounded.get_attribute("class") != model.get_attribute("class")
    assert model.value_of_css_property("border-top-style") == "dashed"
    assert grounded.value_of_css_property("border-top-style") == "solid"
    # a widget without a question has no trust mark
    assert not trust_mark(page, "claims-filed-by-region").is_displayed()


def test_a_verified_answer_shows_the_verified_mark_never_the_unverified_look(
    trust_page: Any, trust_service: DashService
) -> None:
    base = trust_service.base
    put = httpx.put(
        f"{base}/v1/widgets/{VERIFIED}/verified-answer", json={"sql": REGION_SQL}, timeout=30
    )
    assert put.status_code in (200, 201), put.text
    # the next live answer is the verified one (a cached earlier answer is refreshed)
    live = httpx.post(f"{base}/v1/widgets/{VERIFIED}/data", json={"refresh": True}, timeout=60)
    assert live.json()["trust"] == "verified", live.text
    page = trust_page
    open_dashboard(page, trust_service)
    verified = trust_mark(page, VERIFIED)
    assert verified.is_displayed() and verified.get_attribute("data-trust") == "verified"
    assert verified.text == "✔ Verified"
    label = verified.get_attribute("aria-label") or ""
    assert f"Verified by {put.json()['verified_by']}" in label and "unverified" not in label
    model = trust_mark(page, "top-claimed-models")
    assert model.get_attribute("data-trust") == "model_written_unverified"
    # never the same look: another text, class, colour and border
    assert verified.text != model.text
    assert verified.get_attribute("class") != model.get_attribute("class")
    assert verified.value_of_css_property("border-top-style") == "solid"
    assert model.value_of_css_property("border-top-style") == "dashed"
    assert verified.value_of_css_property("background-color") != model.value_of_css_property(
        "background-color"
    )
    grounded = trust_mark(page, ASKED)
    assert verified.get_attribute("class") != grounded.get_attribute("class")
