"""The fleets of `bench/bench_cost.py`: its warehouse processes (the Statement Execution
fake), the resolver instances, the identities' tokens and the demo config it runs."""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from adapters.identity import mint_token

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
TOKEN = "dapi-bench"
SECRET = "bench-cost-secret-at-least-32-bytes-long"
TABLE = "main.claims.claim_events"
KPI_WIDGET, KPI_METRIC = "open-issues-kpi", "active_issues_count"
IDENTITIES = {  # subject -> regions (the row filter on claim_events and alerts)
    "ana": ["northeast"],
    "ben": ["west"],
    "chloe": ["southeast", "southwest"],
    "dev": ["midwest"],
    "eve": ["northeast", "southeast", "midwest", "southwest", "west"],
}
REGIONS = ["northeast", "southeast", "midwest", "southwest", "west"]


# ------------------------------------------------------------------ the warehouse processes


def _warehouse(conn: Any, delay_s: float) -> None:
    """Child process: one Statement Execution fake; commands arrive on `conn`."""
    from datetime import UTC, datetime, timedelta

    import duckdb

    from adapters.lakehouse import build_lakehouse, new_claim_events
    from fakes.databricks_sea import FakeSeaServer
    from fakes.delta_history import is_history_probe

    con = duckdb.connect()
    build_lakehouse(con, now=datetime.now(UTC))
    srv = FakeSeaServer(con, token=TOKEN, max_wait_s=delay_s + 2.0)
    srv.statement_delay_s = delay_s
    srv.start()
    conn.send(srv.port)
    appended = 0
    while True:
        cmd, arg = conn.recv()
        if cmd == "stats":
            data = [s for s in srv.data_statements if "main." in s and not s.startswith("DESCRIBE")]
            conn.send(
                {"data": len(data), "probes": len(srv.statement_texts) - len(srv.data_statements)}
            )
        elif cmd == "probes_of":
            conn.send(sum(1 for s in srv.statement_texts if "HISTORY" in s and arg in s))
        elif cmd == "mark":  # where the statement log is now
            conn.send(len(srv.statements))
        elif cmd == "log_since":  # the data statements since a mark: tags and SQL
            conn.send(
                [
                    {"tags": {t["key"]: t["value"] for t in s.request.get("query_tags") or []}}
                    | {"sql": s.statement}
                    for s in srv.statements[arg:]
                    if not is_history_probe(s.statement)
                ]
            )
        elif cmd == "data_of":
            conn.send(sum(1 for s in srv.data_statements if arg in s))
        elif cmd == "append":
            recent = datetime.now(UTC) - timedelta(seconds=30)
            rows = []
            for region in REGIONS:  # one new claim per region: every identity sees a change
                rows += new_claim_events(
                    1, now=recent, region=region, first_id=20_000_000 + appended
                )
                appended += 1
            srv.append(TABLE, rows)
            conn.send(time.time())
        elif cmd == "stop":
            srv.stop()
            conn.send("stopped")
            return


@dataclass
class Warehouse:
    proc: Any
    pipe: Any
    port: int

    def ask(self, cmd: str, arg: Any = None) -> Any:
        self.pipe.send((cmd, arg))
        return self.pipe.recv()


def start_warehouse(delay_s: float) -> Warehouse:
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=_warehouse, args=(child, delay_s), daemon=True)
    proc.start()
    return Warehouse(proc, parent, parent.recv())


# ------------------------------------------------------------------ the fleets


def write_config(dst: Path) -> Path:
    config = dst / "config"
    shutil.copytree(ROOT / "config", config)
    path = config / "metric_routing.yaml"
    routing = yaml.safe_load(path.read_text())
    for entry in routing["metrics"].values():
        entry["ttl_seconds"] = 10
        entry.pop("stale_while_revalidate_seconds", None)
    path.write_text(yaml.safe_dump(routing, sort_keys=False))
    return config


def free_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 240) -> None:
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"instance {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=10) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"instance {url} did not come up")


@dataclass
class Fleet:
    name: str
    warehouse: Warehouse
    urls: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (when, ms) per load
    errors: int = 0


def tokens() -> dict[str, str]:
    return {
        who: mint_token(
            SECRET,
            tenant="default",
            scopes="data:read widgets:read",
            subject=who,
            claims={"regions": regions},
            ttl_s=3600,
            audience="wdr",
        )
        for who, regions in IDENTITIES.items()
    }


def start_fleet(name: str, env: dict[str, str], n: int, tmp: Path, wh: Warehouse) -> Fleet:
    fleet = Fleet(name, wh)
    resolver = str(Path(sys.executable).parent / "resolver")
    env = env | {"DATABRICKS_HOST": f"http://127.0.0.1:{wh.port}"}
    for i in range(n):
        port = free_port()
        log = (tmp / f"{name}{i}.log").open("wb")
        fleet.procs.append(
            subprocess.Popen(
                [resolver, "serve"], env=env | {"PORT": str(port)}, stdout=log, stderr=log
            )
        )
        fleet.urls.append(f"http://127.0.0.1:{port}")
        wait_ready(fleet.urls[-1], fleet.procs[-1])  # one at a time: the first migrates, seeds
    return fleet


def widgets_of(config: Path) -> tuple[list[str], list[str]]:
    """The demo dashboard's widgets, and those over claim_events (compiled metrics)."""
    widgets = yaml.safe_load((config / "widgets.yaml").read_text())["widgets"]
    metrics = {
        m["name"]: m for m in yaml.safe_load((config / "metrics.yaml").read_text())["metrics"]
    }
    routing = yaml.safe_load((config / "metric_routing.yaml").read_text())["metrics"]
    over = [
        wid
        for wid, w in widgets.items()
        if (mid := w["data_intent"]["metric_id"]) in metrics
        and metrics[mid]["definition"].get("table") == TABLE
        and routing[mid].get("generator", "compiled") == "compiled"
        and "question" not in w["data_intent"]
    ]
    return list(widgets), over


def tables_probed(config: Path) -> list[str]:
    """The warehouse tables the on fleet probes (those of compiled metrics)."""
    metrics = yaml.safe_load((config / "metrics.yaml").read_text())["metrics"]
    routing = yaml.safe_load((config / "metric_routing.yaml").read_text())["metrics"]
    out = set()
    for m in metrics:
        r = routing[m["name"]]
        if r["backend"] != "postgres" and r.get("generator", "compiled") == "compiled":
            out.add(m["definition"]["table"])
    return sorted(out)
