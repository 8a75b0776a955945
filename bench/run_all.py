"""`make bench`: start the service on a free port (embedded PostgreSQL unless configured;
the real Redis at REDIS_URL, default redis://127.0.0.1:6379/0, under a key prefix of its
own), run the HTTP benchmark against it, then the safety-layer and warehouse benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_ready(url: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"service at {url} did not come up")


def main() -> int:
    port = free_port()
    env = os.environ | {
        "PORT": str(port),
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO"),
        # the refresh=true timings need every forced refresh to run (not the debounce's reuse)
        "REFRESH_MIN_INTERVAL_S": "0",
        # cache hits read the real Redis (as deployed), under a prefix nobody else uses
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "CACHE_PREFIX": f"wdr-bench:{uuid.uuid4().hex[:8]}:",
    }
    # its log (one INFO line per resolution) to a file, not through this terminal: a
    # console reading thousands of lines would compete with the service for the CPU
    log_path = Path(tempfile.gettempdir()) / f"wdr-bench-{port}.log"
    log = log_path.open("wb")
    print(f"service log: {log_path}")
    server = subprocess.Popen(
        [str(Path(PY).parent / "resolver"), "serve"], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url)
        print("== HTTP (bench/bench_http.py)")
        subprocess.run([PY, str(ROOT / "bench/bench_http.py"), "--url", url], check=True)
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    for script in ("bench_safety.py", "bench_warehouse.py", "bench_auth.py"):
        if (ROOT / "bench" / script).exists():
            print(f"== {script}")
            subprocess.run([PY, str(ROOT / "bench" / script)], check=True, cwd=ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
