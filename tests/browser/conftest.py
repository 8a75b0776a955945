"""The browser suite's fixtures: the real service (`resolver serve` in a subprocess, its
PostgreSQL reached through a TCP proxy the tests can cut, its cache on the real Redis under a
prefix of its own) and Debian's Chromium, headless, driven by Selenium through Debian's
chromedriver. A missing browser FAILS the suite (run `make browser-deps`); it never skips."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis
import yaml

from fakes.tcp_proxy import TcpProxy
from tests.support.servers import (
    PG_ADMIN_URL,
    REDIS_URL,
    copy_config,
    create_database,
    drop_database,
    entry_point,
    free_port,
    resolver_serve,
)

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("BROWSER_ARTIFACTS_DIR", ROOT / "tests/browser/artifacts"))
CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver")
CONFIG_VARS = (
    "DATABASE_URL",
    "REDIS_URL",
    "DATABRICKS_HOST",
    "DATABRICKS_HTTP_PATH",
    "DATABRICKS_TOKEN",
    "BEDROCK_MODEL_ID",
    "AUTH_JWT_SECRET",
    "AUTH_JWKS_URL",
    "AUTH_REQUIRED",
    "AUTH_DEV_OPEN",
)
# Flags for a browser that talks to loopback only (see the team guide).
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--lang=en-US",
)

pytestmark = pytest.mark.browser


@dataclass
class DashService:
    base: str
    proxy: TcpProxy
    cache_prefix: str
    redis: redis.Redis
    log_path: Path
    proc: subprocess.Popen[bytes]
    env: dict[str, str]

    def widgets(self, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
        r = httpx.get(self.base + "/v1/widgets", headers=headers, timeout=10)
        out: list[dict[str, Any]] = r.json()["widgets"]
        return out

    def forget_cached(self, widget_id: str) -> int:
        """Delete this widget's cached answers (as if they had expired): keys of this
        service's own prefix only."""
        keys = list(self.redis.scan_iter(match=f"{self.cache_prefix}*:{widget_id}:*", count=500))
        return int(self.redis.delete(*keys)) if keys else 0

    def backdate_cached(self, widget_id: str, seconds: float) -> int:
        """Make this widget's cached answers `seconds` older (their `resolved_at` earlier,
        their Redis expiry kept), as if that much time had passed: a test reaches a
        freshness window without waiting for the wall clock. Keys of this service's own
        prefix only; returns how many entries were backdated."""
        n = 0
        for key in self.redis.scan_iter(match=f"{self.cache_prefix}*:{widget_id}:*", count=500):
            blob = self.redis.get(key)
            entry = json.loads(blob) if blob else None
            if isinstance(entry, dict) and "resolved_at" in entry:
                entry["resolved_at"] = float(entry["resolved_at"]) - seconds
                n += bool(self.redis.set(key, json.dumps(entry), keepttl=True, xx=True))
        return n

    def mint(self, scope: str, *claims: str, tenant: str = "default") -> str:
        """A token from `resolver token`, signed with this service's secret."""
        args = [entry_point("resolver"), "token", "--tenant", tenant, "--scope", scope]
        for claim in claims:
            args += ["--claim", claim]
        out = subprocess.run(args, env=self.env, capture_output=True, text=True, check=True)
        return out.stdout.strip()

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@pytest.fixture(scope="session")
def browser_binaries() -> tuple[str, str]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        pytest.fail(
            f"the browser suite needs Debian's chromium and chromium-driver; missing: {missing}. "
            "Run `make browser-deps` (apt-get install chromium chromium-driver) — "
            "this suite never skips.",
            pytrace=False,
        )
    return CHROMIUM, CHROMEDRIVER


LONG_TTL_S = 6 * 3600


def long_lived_config(tmp: Path) -> Path:
    """The demo config with every answer fresh for hours: however slow the machine, no tile
    turns stale while the suite runs (the stale test sets its own windows and backdates
    its entries; the outage test drops its entry with `forget_cached`)."""
    config = copy_config(tmp)
    path = config / "metric_routing.yaml"
    routing = yaml.safe_load(path.read_text())
    for entry in routing["metrics"].values():
        entry["ttl_seconds"] = max(int(entry.get("ttl_seconds", 0)), LONG_TTL_S)
        entry.pop("stale_while_revalidate_seconds", None)
    path.write_text(yaml.safe_dump(routing))
    return config


@contextmanager
def serving(tmp: Path, **settings: str) -> Iterator[DashService]:
    """`resolver serve` over a fresh database on the real PostgreSQL (through a TCP proxy
    the test can cut) and the real Redis (a prefix of its own); embedded DuckDB warehouse,
    no LLM. `settings` are extra environment variables."""
    if "CONFIG_DIR" not in settings:
        settings = {"CONFIG_DIR": str(long_lived_config(tmp))} | settings
    db_url = create_database("wdr_browser")
    pg = urlsplit(PG_ADMIN_URL)
    proxy = TcpProxy(pg.hostname or "127.0.0.1", pg.port or 5432)
    proxy.start()
    prefix = f"wdr-browser:{uuid.uuid4().hex[:8]}:"
    port = free_port()
    env = (
        {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
        | {
            "PORT": str(port),
            "DATA_DIR": str(tmp),
            "DATABASE_URL": proxy.url_for(db_url),
            "SEED_DEMO": "true",  # a fresh database: the demo widgets
            "REDIS_URL": REDIS_URL,
            "CACHE_PREFIX": prefix,
            "LOG_LEVEL": "WARNING",
            "PG_CONNECT_TIMEOUT_S": "1",
            # a query over a slow link (test_dashboard_stream) is slow, never timed out,
            # however loaded the machine: a cut link fails at once (the proxy closes it)
            "PG_DEADLINE_S": "60",
            "REFRESH_MIN_INTERVAL_S": "0",  # a forced refresh is never debounced here
        }
        | settings
    )
    log_path = tmp / "serve.log"
    r = redis.Redis.from_url(REDIS_URL)
    try:
        with resolver_serve(env, log_path, cwd=ROOT) as proc:
            yield DashService(f"http://127.0.0.1:{port}", proxy, prefix, r, log_path, proc, env)
    finally:
        proxy.close()
        keys = list(r.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            r.delete(*keys)
        r.close()
        drop_database(db_url)


@pytest.fixture(scope="session")
def dash_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashService]:
    """The service on its defaults (dev mode: loopback callers need no token)."""
    with serving(tmp_path_factory.mktemp("dash")) as svc:
        yield svc


@pytest.fixture(scope="session")
def driver(browser_binaries: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = browser_binaries
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.add_argument("--window-size=1440,1000")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    service = Service(executable_path=chromedriver, log_output=subprocess.DEVNULL)
    drv = webdriver.Chrome(options=options, service=service)
    drv.set_page_load_timeout(30)
    drv.set_script_timeout(30)
    try:
        yield drv
    finally:
        drv.quit()


def console_errors(drv: Any) -> list[dict[str, Any]]:
    return [e for e in drv.get_log("browser") if e.get("level") in ("SEVERE", "ERROR")]


def network_requests(drv: Any) -> list[dict[str, Any]]:
    """Requests the page sent since the last call (Network.requestWillBeSent events)."""
    out = []
    for entry in drv.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            out.append(msg["params"]["request"])
    return out


def fresh_tab(drv: Any) -> None:
    """A new tab (so a fresh sessionStorage), the others closed, the logs emptied."""
    old = drv.current_window_handle
    drv.switch_to.new_window("tab")
    new = drv.current_window_handle
    drv.switch_to.window(old)
    drv.close()
    drv.switch_to.window(new)
    drv.set_window_size(1440, 1000)
    drv.get_log("browser")
    drv.get_log("performance")


def after_test(drv: Any, request: pytest.FixtureRequest, allowed: tuple[str, ...] = ()) -> None:
    """No console errors (bar `allowed` substrings); a screenshot when the test failed."""
    errors = [e for e in console_errors(drv) if not any(a in e["message"] for a in allowed)]
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        drv.save_screenshot(str(ARTIFACTS / f"failed-{request.node.name}.png"))
    assert not errors, f"console errors: {errors}"


@pytest.fixture
def page(driver: Any, dash_service: DashService, request: pytest.FixtureRequest) -> Iterator[Any]:
    """The driver in a fresh tab; after the test: no console errors at all, and a screenshot
    saved as an artifact when the test failed."""
    fresh_tab(driver)
    yield driver
    after_test(driver, request)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    if rep.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]
    return rep
