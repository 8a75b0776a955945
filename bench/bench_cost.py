"""`make bench-cost`: warehouse cost and freshness with change-driven refresh on and off (a
benchmark, not a test).

Starts, on this machine, two fleets side by side (the same run, the same load, interleaved
in time), each with its own Statement Execution fake (fakes.databricks_sea, every
statement held ~DELAY s, in its own process) and its own Redis key prefix, sharing one
fresh database on the real PostgreSQL:
- `on`:  INSTANCES `resolver serve` processes with CHANGE_REFRESH=true (probe interval
  PROBE_S);
- `off`: INSTANCES processes as today (TTLs and refresh-ahead only).
Both have JWT auth (HS256) and every metric's TTL set to 10 s. Five identities whose tokens
carry different `regions` (so different row filters) each load the demo dashboard (the
batch endpoint) every INTERVAL s on each fleet.

Phases, the same for both fleets:
1. warm-up (the first build: at least WARMUP s, then until the on fleet's warehouse has
   had no data statement for 5 s), then a QUIET s window with no data change: data statements
   per fleet (target 0 with change refresh), probes counted separately (at most one per
   table per interval);
2. rows appended to main.claims.claim_events in both warehouses at once: for every
   identity, instance and tile over that table, the time until its answer changes (target:
   probe interval + 2 s), and the data statements it took;
3. a row inserted into kpi_metrics_history: the time until the KPI tile changes on every
   instance (target 3 s);
4. the viewers' p50/p99 after the first build.
The `on` fleet also answers from rollups (ROLLUPS_ENABLED=true, config/rollups.yaml; rebuilt
per partition when the table's version moves); 5. the p50/p99 of rollup answers over HTTP
(`refresh=true`, so the rollup read itself, not the cache).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench_http import pct  # noqa: E402
from cost_breakdown import breakdown  # noqa: E402
from cost_clients import rollup_latencies, snapshot, time_to_change, viewer  # noqa: E402
from cost_fleet import (  # noqa: E402
    IDENTITIES,
    KPI_METRIC,
    KPI_WIDGET,
    PG_ADMIN_URL,
    REDIS_URL,
    SECRET,
    TABLE,
    TOKEN,
    Fleet,
    start_fleet,
    start_warehouse,
    tables_probed,
    tokens,
    widgets_of,
    write_config,
)

# ------------------------------------------------------------------ main


def fmt(xs: list[float]) -> str:
    return f"max {max(xs):.2f} s, median {sorted(xs)[len(xs) // 2]:.2f} s" if xs else "n/a"


async def main_async(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="wdr-bench-cost-"))
    dbname = f"wdr_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{dbname}"')
    db_url = PG_ADMIN_URL.rpartition("/")[0] + "/" + dbname
    config = write_config(tmp)
    all_widgets, over_table = widgets_of(config)
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABRICKS_", "BEDROCK_", "AUTH_"))
    }
    base |= {
        "DATABASE_URL": db_url,
        "REDIS_URL": REDIS_URL,
        "CONFIG_DIR": str(config),
        "DATA_DIR": str(tmp / "data"),
        "DATABRICKS_HTTP_PATH": "/sql/1.0/warehouses/f4ke0wareh0use01",
        "DATABRICKS_TOKEN": TOKEN,
        "DATABRICKS_TRANSPORT": "sea",
        "DATABRICKS_QUERY_TIMEOUT_S": "15",
        "AUTH_JWT_SECRET": SECRET,
        "AUTH_AUDIENCE": "wdr",
        "SEED_DEMO": "true",  # a fresh database: the demo widgets
        "LOG_LEVEL": "WARNING",
        "CACHE_SOCKET_TIMEOUT_S": "0.5",
        "METRICS_ENABLED": "false",
    }
    envs = {
        "on": base
        | {
            "CACHE_PREFIX": f"wdr-bench:{uuid.uuid4().hex[:8]}:",
            "CHANGE_REFRESH": "true",
            "DATA_VERSION_INTERVAL_S": str(args.probe_s),
            "ROLLUPS_ENABLED": "true",
            "REFRESH_MIN_INTERVAL_S": "0",  # the rollup timing asks refresh=true in a row
            "LOG_LEVEL": os.environ.get("BENCH_ON_LOG_LEVEL", "WARNING"),
        },
        "off": base
        | {"CACHE_PREFIX": f"wdr-bench:{uuid.uuid4().hex[:8]}:", "CHANGE_REFRESH": "false"},
    }
    fleets: dict[str, Fleet] = {}
    toks = tokens()
    res: dict[str, Any] = {"on": {}, "off": {}}
    try:
        for name in ("on", "off"):
            fleets[name] = start_fleet(
                name, envs[name], args.instances, tmp, start_warehouse(args.delay)
            )
        print(
            f"{args.instances} instances per fleet up; {len(IDENTITIES)} identities; warehouse {args.delay:g} s/statement; probe interval {args.probe_s:g} s; load average {os.getloadavg()[0]:.1f}"
        )
        stop = asyncio.Event()
        t_start = time.time()
        viewers = [
            asyncio.create_task(
                viewer(f, f.urls[i % len(f.urls)], tok, all_widgets, args.interval, stop, i)
            )
            for f in fleets.values()
            for i, tok in enumerate(toks.values())
        ]
        await asyncio.sleep(args.warmup)  # the first build
        # ... done: no data statement on the on fleet's warehouse for 5 s (its rollups' first
        # builds may outlast the warm-up; the off fleet never settles: its TTLs run on)
        settled = -1
        while (now_at := fleets["on"].warehouse.ask("stats")["data"]) != settled:
            settled = now_at
            if time.time() - t_start > args.warmup + 120:
                break
            await asyncio.sleep(5)
        built = time.time()
        for f in fleets.values():
            res[f.name]["warmup_statements"] = f.warehouse.ask("stats")["data"]
        # 1. quiet window
        before = {n: f.warehouse.ask("stats") for n, f in fleets.items()}
        quiet_marks = {n: f.warehouse.ask("mark") for n, f in fleets.items()}
        print(f"quiet window: {args.quiet:g} s with no data change")
        await asyncio.sleep(args.quiet)
        for n, f in fleets.items():
            after = f.warehouse.ask("stats")
            res[n]["quiet_statements"] = after["data"] - before[n]["data"]
            res[n]["quiet_probes"] = after["probes"] - before[n]["probes"]
            names = {str(p.pid): f"{n}{i}" for i, p in enumerate(f.procs)}
            res[n]["quiet_breakdown"] = breakdown(
                f.warehouse.ask("log_since", quiet_marks[n]), names, "main."
            )
        # 2. rows appended to claim_events
        snaps = {n: await snapshot(f, over_table, toks) for n, f in fleets.items()}
        reads = {n: f.warehouse.ask("data_of", TABLE) for n, f in fleets.items()}
        marks = {n: f.warehouse.ask("mark") for n, f in fleets.items()}
        appended = {n: f.warehouse.ask("append") for n, f in fleets.items()}
        print("appended 5 rows (one per region) to", TABLE)
        changed = await asyncio.gather(
            *(
                time_to_change(f, over_table, toks, snaps[n], appended[n], args.limit, 0.25)
                for n, f in fleets.items()
            )
        )
        await asyncio.sleep(args.settle)  # what the change still causes after the tiles show it
        for (n, f), seen in zip(fleets.items(), changed, strict=True):
            got = [v for v in seen.values() if v is not None]
            res[n]["append_tiles"] = len(seen)
            res[n]["append_changed"] = len(got)
            res[n]["append_s"] = got
            res[n]["append_statements"] = f.warehouse.ask("data_of", TABLE) - reads[n]
            names = {str(p.pid): f"{n}{i}" for i, p in enumerate(f.procs)}
            res[n]["append_breakdown"] = breakdown(
                f.warehouse.ask("log_since", marks[n]), names, TABLE
            )
        # 3. a kpi_metrics_history row
        kpi_before = {
            n: await snapshot(f, [KPI_WIDGET], {"ana": toks["ana"]}) for n, f in fleets.items()
        }
        with psycopg.connect(db_url, autocommit=True) as c:
            c.execute(
                "INSERT INTO kpi_metrics_history (metric_name, recorded_at, value, dimensions)"
                " VALUES (%s, now() - interval '5 seconds', 424242,"
                ' \'{"team": "platform", "severity": "critical"}\')',
                (KPI_METRIC,),
            )
        inserted = time.time()
        kpi = await asyncio.gather(
            *(
                time_to_change(
                    f, [KPI_WIDGET], {"ana": toks["ana"]}, kpi_before[n], inserted, args.limit, 0.1
                )
                for n, f in fleets.items()
            )
        )
        for n, seen in zip(fleets, kpi, strict=True):
            res[n]["kpi_s"] = [v for v in seen.values() if v is not None]
            res[n]["kpi_tiles"] = len(seen)
        # 4. rollup answers over HTTP (refresh=true: the rollup read, not the cache)
        before_rollups = fleets["on"].warehouse.ask("stats")["data"]
        rolled = await rollup_latencies(
            fleets["on"].urls[0], over_table, toks["ben"], args.rollup_n
        )
        res["on"]["rollup_widgets"] = rolled["widgets"]
        res["on"]["rollup_ms"] = rolled["ms"]
        res["on"]["rollup_statements"] = (
            fleets["on"].warehouse.ask("stats")["data"] - before_rollups
        )
        stop.set()
        await asyncio.gather(*viewers)
        for n, f in fleets.items():
            after = [ms for at, ms in f.latencies if at >= built]  # after the first build
            res[n]["p50"] = pct(after, 50) if after else float("nan")
            res[n]["p99"] = pct(after, 99) if after else float("nan")
            res[n]["loads"] = len(after)
            res[n]["errors"] = f.errors
            # the fake sees the warehouse tables' probes (PostgreSQL's are not statements)
            res[n]["probes_per_table_interval"] = res[n]["quiet_probes"] / max(
                1, len(tables_probed(config)) * (args.quiet / args.probe_s)
            )
    finally:
        for f in fleets.values():
            for p in f.procs:
                p.terminate()
            for p in f.procs:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
            f.warehouse.ask("stop")
            res[f.name]["redis_fallbacks"] = sum(  # the cache's or the leases' breaker tripped
                (tmp / f"{f.name}{i}.log").read_text(errors="replace").count(needle)
                for i in range(len(f.procs))
                for needle in ("using in-process leases", "treating as a miss")
            )
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        if os.environ.get("BENCH_KEEP"):
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print_report(res, args, over_table)
    return 0


def print_report(res: dict[str, Any], args: argparse.Namespace, over_table: list[str]) -> None:
    on, off = res["on"], res["off"]
    print()
    print(f"{'':46} {'change refresh on':>20} {'off (today)':>16}")
    print(
        f"{'first build: data statements':46} {on['warmup_statements']:>20} {off['warmup_statements']:>16}"
    )
    print(
        f"{'quiet ' + format(args.quiet, 'g') + ' s: data statements (target 0)':46} {on['quiet_statements']:>20} {off['quiet_statements']:>16}"
    )
    print(
        f"{'quiet: version probes (all sources)':46} {on['quiet_probes']:>20} {off['quiet_probes']:>16}"
    )
    print(
        f"{'quiet: probes per source per interval (<= 1)':46} {on['probes_per_table_interval']:>20.2f} {'-':>16}"
    )
    print(
        f"{'append: tiles watched (identity x instance x tile)':46} {on['append_tiles']:>20} {off['append_tiles']:>16}"
    )
    print(
        f"{'append: tiles changed within ' + format(args.limit, 'g') + ' s':46} {on['append_changed']:>20} {off['append_changed']:>16}"
    )
    print(
        f"{'append: time to reflect (target probe + 2 s)':46} {fmt(on['append_s']):>20} {fmt(off['append_s']):>16}"
    )
    print(
        f"{'append: data statements over the table (+' + format(args.settle, 'g') + ' s)':46} {on['append_statements']:>20} {off['append_statements']:>16}"
    )
    print(
        f"{'kpi row: time to reflect on every instance':46} {fmt(on['kpi_s']):>20} {fmt(off['kpi_s']):>16}"
    )
    print(
        f"{'viewers: loads, errors':46} {str(on['loads']) + ', ' + str(on['errors']):>20} {str(off['loads']) + ', ' + str(off['errors']):>16}"
    )
    print(
        f"{'viewers after the build: p50 / p99 ms (dashboard)':46} {format(on['p50'], '.1f') + ' / ' + format(on['p99'], '.1f'):>20} {format(off['p50'], '.1f') + ' / ' + format(off['p99'], '.1f'):>16}"
    )
    print(
        f"{'Redis timeouts (breaker trips: unshared leases)':46} {on.get('redis_fallbacks', '?'):>20} {off.get('redis_fallbacks', '?'):>16}"
    )
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    ratio = (
        off["quiet_statements"] / on["quiet_statements"] if on["quiet_statements"] else float("inf")
    )
    print(f"quiet-window statements off/on: {ratio:g}; tiles over {TABLE}: {', '.join(over_table)}")
    print("quiet window: the data statements, on (count x what, why, where, rows):")
    print("\n".join(on["quiet_breakdown"]) or "    none")
    for n, what in (("on", "on"), ("off", "off (today)")):
        print(f"append: the data statements over {TABLE}, {what} (count x what, why, where, rows):")
        print("\n".join(res[n]["append_breakdown"]) or "    none")
    ms = on.get("rollup_ms") or []
    if ms:
        print(
            f"rollup answers over HTTP (refresh=true, {len(ms)} of {', '.join(on['rollup_widgets'])}):"
            f" p50 {pct(ms, 50):.1f} ms, p99 {pct(ms, 99):.1f} ms (target p99 < 20 ms);"
            f" warehouse statements meanwhile: {on['rollup_statements']}"
        )
    else:
        print("rollup answers: none of the tiles over the table was answered from a rollup")
    print(json.dumps(res, default=str))


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--instances", type=int, default=2)
    p.add_argument(
        "--interval", type=float, default=4.0, help="seconds between an identity's loads"
    )
    p.add_argument("--warmup", type=float, default=25.0)
    p.add_argument("--quiet", type=float, default=60.0)
    p.add_argument("--probe-s", type=float, default=2.0, help="data version probe interval")
    p.add_argument("--limit", type=float, default=30.0, help="longest wait for a change to show")
    p.add_argument(
        "--settle",
        type=float,
        default=5.0,
        help="seconds the append's statements are counted after every tile showed it",
    )
    p.add_argument("--delay", type=float, default=1.0, help="seconds per warehouse statement")
    p.add_argument("--rollup-n", type=int, default=100, help="timed rollup answers per widget")
    return asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
