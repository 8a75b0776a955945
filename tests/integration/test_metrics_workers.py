"""Several uvicorn workers on one host (`WORKERS=2 resolver serve`): prometheus-client's
multiprocess mode makes every worker's GET /metrics report the sum of all of them."""

from __future__ import annotations

import http.client
import os
import subprocess
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.servers import REDIS_URL, create_database, drop_database, entry_point, free_port


def _post(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def _resolutions(port: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/metrics", headers={"Connection": "close"})
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    return sum(s.value for s in fams["wdr_resolutions"].samples if s.name.endswith("_total"))


def test_two_workers_report_the_sum_of_both(tmp_path: Path) -> None:
    url = create_database()
    port = free_port()
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LANGSMITH_"))}
    env |= {
        "PORT": str(port),
        "WORKERS": "2",
        "DATABASE_URL": url,
        "SEED_DEMO": "true",  # a fresh database: the demo widgets
        "REDIS_URL": REDIS_URL,  # workers share the cache and leases
        "CACHE_PREFIX": f"wdr-test:{Path(url).name}:",
        "DATA_DIR": str(tmp_path / "data"),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([entry_point("resolver"), "serve"], env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120
        ready = 0
        while ready < 2:  # both workers up: each writes its own files once it counts
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                _post(port, "/v1/widgets/open-issues-kpi/data")
            except OSError:
                time.sleep(0.3)
                continue
            ready = len({p.name.rsplit("_", 1)[1] for p in metrics_dir.glob("counter_*.db")})
        before = _resolutions(port)
        for _ in range(20):
            assert _post(port, "/v1/widgets/issues-by-severity/data") == 200
        pids = {p.name.rsplit("_", 1)[1] for p in metrics_dir.glob("counter_*.db")}
        # both workers counted resolutions (a third file: uvicorn replaced a worker that did
        # not answer its health check in time on a loaded machine; its counts still add up)
        assert len(pids) >= 2
        # whichever worker answers the scrape, it reports both workers' resolutions
        assert {_resolutions(port) - before for _ in range(6)} == {20.0}
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()
        drop_database(url)
