"""Integration: the dashboard page and its static files, served by the service itself (no CDN),
and the batch endpoint's per-answer trace the page's Trace view shows."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from service.routes.dashboard import STATIC_DIR
from tests.support.servers import (
    Service,
)

aio = pytest.mark.asyncio(loop_scope="module")
ROOT = Path(__file__).resolve().parents[2]
OWN_FILES = ("index.html", "dashboard.js", "dashboard.css")


@aio
@pytest.mark.parametrize("path", ["/", "/dashboard"])
async def test_page_is_served_with_a_same_origin_policy(svc: Service, path: str) -> None:
    r = await svc.client.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert '<script src="/static/dashboard.js"' in r.text
    assert '<script src="/static/vendor/echarts/echarts.common.min.js"' in r.text
    head = await svc.client.head(path)
    assert head.status_code == 200


@aio
async def test_every_asset_the_page_references_is_served(svc: Service) -> None:
    html = (await svc.client.get("/")).text
    refs = set(re.findall(r'(?:src|href)="(/static/[^"]+)"', html))
    assert len(refs) >= 5, refs
    for ref in refs:
        r = await svc.client.get(ref)
        assert r.status_code == 200 and r.content, ref
        assert r.headers["x-content-type-options"] == "nosniff"
    js = await svc.client.get("/static/dashboard.js")
    assert "javascript" in js.headers["content-type"]
    lib = await svc.client.get("/static/vendor/echarts/echarts.common.min.js")
    assert "Licensed to the Apache Software Foundation" in lib.text[:2000]
    assert len(lib.content) > 500_000
    for name in ("LICENSE", "NOTICE"):
        r = await svc.client.get(f"/static/vendor/echarts/{name}")
        assert r.status_code == 200 and "Apache" in r.text


@aio
@pytest.mark.parametrize(
    "path", ["/static/../settings.py", "/static/%2e%2e/settings.py", "/static/nope.js"]
)
async def test_static_serves_only_its_own_folder(svc: Service, path: str) -> None:
    r = await svc.client.get(path)
    assert r.status_code == 404
    assert "Settings" not in r.text


def test_no_cdn_and_no_network_at_run_time() -> None:
    for name in OWN_FILES:
        text = (STATIC_DIR / name).read_text()
        urls = re.findall(r"https?://[^\s\"')]+", text)
        assert not urls, (name, urls)  # everything is same-origin
        assert "innerHTML" not in text, name  # server data goes in as text, never as HTML


def test_static_files_ship_in_the_package() -> None:
    """Every file under service/static matches the package-data patterns in pyproject.toml,
    so an installed wheel serves the page too (not only this checkout)."""
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = conf["tool"]["setuptools"]["package-data"]["service"]
    service_dir = STATIC_DIR.parent
    shipped = {p for pat in patterns for p in service_dir.glob(pat) if p.is_file()}
    on_disk = {p for p in STATIC_DIR.rglob("*") if p.is_file()}
    assert on_disk and on_disk == shipped, sorted(str(p) for p in on_disk ^ shipped)


@aio
async def test_dashboard_routes_stay_out_of_the_api_contract(svc: Service) -> None:
    paths = svc.app.openapi()["paths"]
    assert "/" not in paths and "/dashboard" not in paths
    assert not any(p.startswith("/static") for p in paths)


@aio
async def test_batch_carries_each_answers_trace_when_asked(svc: Service) -> None:
    ids = ["open-issues-kpi", "claims-filed-by-region"]
    plain = (await svc.client.post("/v1/widgets/data", json={"widget_ids": ids})).json()
    assert all("trace" not in r for r in plain["results"])
    traced = await svc.client.post("/v1/widgets/data?trace=true", json={"widget_ids": ids})
    assert traced.status_code == 200
    results = traced.json()["results"]
    assert [r["widget_id"] for r in results] == ids
    for r in results:
        nodes = [t["node"] for t in r["trace"]]
        assert nodes[0] == "route" and nodes[-1] == "degrade_or_return", nodes
        assert all(t["ms"] >= 0 and t["outcome"] for t in r["trace"])
    # both were cached by the plain call: the trace is the cache-hit path of THIS answer
    assert all(r["cache_hit"] for r in results)
    assert all("cache_lookup" in [t["node"] for t in r["trace"]] for r in results)
    assert all(len(r["trace"]) == 3 for r in results)
