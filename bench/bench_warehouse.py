"""Compile and embedded-DuckDB latency per demo warehouse widget (not a test).

    python bench/bench_warehouse.py [--compile-runs 500] [--execute-runs 30]

For every widget in config/widgets.yaml whose metric routes to databricks, reports the
median (and p95) of:
- compile: metricsql.compile_intent (metric definition + intent -> Databricks SQL),
- transpile: adapters.transpile.to_duckdb (Databricks -> DuckDB SQL),
- execute: DuckDBWarehouse.execute end to end (transpile, thread hop, run, fetch, JSON-safe),
plus the one-off lakehouse build time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.duckdb_warehouse import DuckDBWarehouse  # noqa: E402
from adapters.transpile import to_duckdb  # noqa: E402
from domain.config import load_config  # noqa: E402
from domain.models import MetricDef, WidgetSpec  # noqa: E402
from metricsql import compile_intent  # noqa: E402


def load() -> tuple[dict[str, MetricDef], dict[str, WidgetSpec]]:
    cfg = load_config(ROOT / "config")
    widgets = {
        wid: w
        for wid, w in cfg.widgets.items()
        if cfg.routing[w.data_intent.metric_id].backend == "databricks"
    }
    return cfg.metrics, widgets


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def timed_ms(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def main(compile_runs: int, execute_runs: int) -> None:
    metrics, widgets = load()
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    wh = DuckDBWarehouse(now=now)
    build_ms = (time.perf_counter() - t0) * 1000
    print(f"lakehouse build + read-only reopen: {build_ms:.0f} ms")
    header = f"{'widget':32} {'compile ms':>16} {'transpile ms':>16} {'execute ms':>16} {'rows':>5}"
    print(header)
    print(f"{'':32} {'median / p95':>16} {'median / p95':>16} {'median / p95':>16}")
    all_exec: list[float] = []
    for wid, widget in widgets.items():
        metric, intent = metrics[widget.data_intent.metric_id], widget.data_intent
        sql = compile_intent(metric, intent, now=now)
        comp = timed_ms(partial(compile_intent, metric, intent, now=now), compile_runs)
        trans = timed_ms(partial(to_duckdb, sql), compile_runs // 5 or 1)
        await wh.execute(sql, max_rows=1000)  # warm
        execs, rows = [], 0
        for _ in range(execute_runs):
            t = time.perf_counter()
            result = await wh.execute(sql, max_rows=1000)
            execs.append((time.perf_counter() - t) * 1000)
            rows = len(result.rows)
        all_exec += execs
        print(
            f"{wid:32} {statistics.median(comp):7.3f} / {pct(comp, 95):6.3f} "
            f"{statistics.median(trans):7.3f} / {pct(trans, 95):6.3f} "
            f"{statistics.median(execs):7.2f} / {pct(execs, 95):6.2f} {rows:5d}"
        )
    print(
        f"all widgets: execute median {statistics.median(all_exec):.2f} ms, p95 {pct(all_exec, 95):.2f} ms"
    )
    wh.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compile-runs", type=int, default=500)
    ap.add_argument("--execute-runs", type=int, default=30)
    args = ap.parse_args()
    asyncio.run(main(args.compile_runs, args.execute_runs))
