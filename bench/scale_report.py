"""The figures `bench/bench_scale.py` prints, from its samples and the warehouse's log."""

from __future__ import annotations

import itertools
import json
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bench_http import pct


@dataclass
class Sample:
    t: float  # seconds since the viewers started (when the answer arrived)
    ms: float
    status: int
    results: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


def report(
    samples: list[Sample],
    stats: dict[str, Any],
    *,
    dashboard: dict[str, dict[str, Any]],
    ttls: dict[str, int],
    t0_wall: float,
    outage: tuple[float, float],
    duration: float,
) -> dict[str, Any]:
    fail_at, back_at = outage
    ok = [s for s in samples if s.status == 200 and len(s.results) == len(dashboard)]
    # first fill: the first answer in which every tile is live data (no mock)
    filled = next(
        (
            s.t
            for s in sorted(ok, key=lambda s: s.t)
            if all(not r["live_data_unavailable"] for r in s.results)
        ),
        None,
    )
    assert filled is not None, "the dashboard never filled"
    # requests sent after the first fill (one that waited for the fill itself is not "after")
    after = [s for s in samples if s.t - s.ms / 1000 > filled]
    lat = [s.ms for s in after if s.status == 200]
    answers = [r for s in after for r in s.results]
    in_outage = [r for s in after if fail_at <= s.t <= back_at + 1 for r in s.results]
    errors = sum(1 for s in after if s.status != 200)
    errors_outage = sum(1 for s in after if s.status != 200 and fail_at <= s.t <= back_at + 1)

    def is_mock(r: dict[str, Any]) -> bool:
        return bool(r["live_data_unavailable"]) and not r["stale"]

    # statements per widget, per TTL window, over the run after the first fill
    per_widget: dict[str, list[float]] = {w: [] for w in dashboard}
    start_clock = stats["clock"] - (stats["wall"] - t0_wall)  # the fake's clock at t = 0
    for _sql, tags, ready_at in stats["statements"]:
        # query_tags as the Statement Execution API receives them: [{key, value}, ...]
        wid = {t.get("key"): t.get("value") for t in tags or []}.get("widget")
        if wid in per_widget:
            per_widget[wid].append(ready_at - start_clock)
    rows = []
    for wid, times in per_widget.items():
        ttl = ttls[dashboard[wid]["metric_id"]]
        times = sorted(t for t in times if t > filled)
        windows = (duration - filled) / ttl
        buckets: dict[int, int] = {}
        for t in times:
            buckets[int((t - filled) // ttl)] = buckets.get(int((t - filled) // ttl), 0) + 1
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # the most statements inside any interval one TTL long (not only aligned windows)
        sliding = max(
            (sum(1 for u in times if t <= u < t + ttl) for t in times),
            default=0,
        )
        rows.append(
            {
                "widget": wid,
                "ttl_s": ttl,
                "statements": len(times),
                "per_ttl_window": round(len(times) / windows, 3),
                "max_in_one_window": max(buckets.values(), default=0),
                "max_in_any_ttl": sliding,
                "min_gap_s": round(min(gaps), 2) if gaps else None,
            }
        )
    # fresh again: per widget, the first answer after recovery that is live, not stale, and
    # resolved after the warehouse came back
    fresh_again = {}
    for wid in dashboard:
        ttl = ttls[dashboard[wid]["metric_id"]]
        t_fresh = None
        for s in sorted(after, key=lambda s: s.t):
            if s.t < back_at:
                continue
            for r in s.results:
                if r["widget_id"] == wid and not r["stale"] and not r["live_data_unavailable"]:
                    resolved = datetime.fromisoformat(r["resolved_at"]).timestamp()
                    if resolved - t0_wall >= back_at - 1:
                        t_fresh = s.t
                        break
            if t_fresh is not None:
                break
        fresh_again[wid] = (None if t_fresh is None else round(t_fresh - back_at, 2), ttl)
    return {
        "first_fill_s": round(filled, 2),
        "requests_after_fill": len(after),
        "tiles_after_fill": len(answers),
        "latency_p50_ms": round(statistics.median(lat), 2),
        "latency_p99_ms": round(pct(lat, 99), 2),
        "latency_max_ms": round(max(lat), 2),
        # p50 / p99 by phase: before the outage, during it (and 1 s after), after it
        "latency_by_phase_ms": {
            phase: [round(statistics.median(xs), 2), round(pct(xs, 99), 2)] if xs else None
            for phase, xs in (
                ("before", [s.ms for s in after if s.status == 200 and s.t < fail_at]),
                (
                    "outage",
                    [s.ms for s in after if s.status == 200 and fail_at <= s.t <= back_at + 1],
                ),
                ("after", [s.ms for s in after if s.status == 200 and s.t > back_at + 1]),
            )
        },
        "stale": sum(1 for r in answers if r["stale"]),
        "stale_revalidating": sum(1 for r in answers if r["stale_reason"] == "revalidating"),
        "stale_last_good": sum(1 for r in answers if r["stale"] and r["live_data_unavailable"]),
        "mock": sum(1 for r in answers if is_mock(r)),
        "errors": errors,
        "outage_tiles": len(in_outage),
        "outage_stale": sum(1 for r in in_outage if r["stale"]),
        "outage_mock": sum(1 for r in in_outage if is_mock(r)),
        "outage_errors": errors_outage,
        "refused_statements_in_outage": stats["refused"],
        "per_widget": rows,
        "fresh_again_s": fresh_again,
    }


def print_report(res: dict[str, Any], args: Any, tiles: int) -> None:
    def mark(ok: bool) -> str:
        return "met" if ok else "MISSED"

    print(
        f"\n{args.instances} instances, {args.viewers} viewers x {tiles} tiles every "
        f"~{args.interval:g} s for {args.duration:g} s; warehouse {args.delay:g} s per statement, "
        f"failing {args.outage_at:g}-{args.outage_at + args.outage_s:g} s"
    )
    print(
        f"first fill after {res['first_fill_s']} s; {res['requests_after_fill']} dashboard loads "
        f"({res['tiles_after_fill']} tiles) after it"
    )
    print("\nwarehouse statements per widget (whole fleet, after the first fill):")
    print(
        f"  {'widget':24s} {'TTL':>4s} {'stmts':>6s} {'per TTL window':>15s} {'max in a window':>16s} "
        f"{'max in any TTL':>15s} {'min gap s':>10s}"
    )
    worst = 0.0
    worst_window = 0
    for r in res["per_widget"]:
        worst = max(worst, r["per_ttl_window"])
        worst_window = max(worst_window, r["max_in_one_window"], r["max_in_any_ttl"])
        print(
            f"  {r['widget']:24s} {r['ttl_s']:4d} {r['statements']:6d} {r['per_ttl_window']:15.3f} "
            f"{r['max_in_one_window']:16d} {r['max_in_any_ttl']:15d} {r['min_gap_s']!s:>10s}"
        )
    print(
        f"  worst: {worst:.3f} per TTL window, at most {worst_window} in any one window or "
        f"TTL-long interval "
        f"(target <= 1: {mark(worst <= 1.0 and worst_window <= 1)})"
    )
    print(f"  refused while failing (HTTP 503, nothing ran): {res['refused_statements_in_outage']}")
    print(
        f"\nviewer latency after the first fill: p50 {res['latency_p50_ms']} ms, p99 "
        f"{res['latency_p99_ms']} ms (target < 100: {mark(res['latency_p99_ms'] < 100)}), "
        f"max {res['latency_max_ms']} ms"
    )
    print(
        "  p50 / p99 by phase (ms): "
        + ", ".join(f"{k} {v[0]} / {v[1]}" for k, v in res["latency_by_phase_ms"].items() if v)
    )
    print(
        f"answers after the first fill: stale {res['stale']} (revalidating "
        f"{res['stale_revalidating']}, last good {res['stale_last_good']}), mock {res['mock']}, "
        f"errors {res['errors']}"
    )
    print(
        f"during the outage: {res['outage_tiles']} tiles, stale {res['outage_stale']}, mock "
        f"{res['outage_mock']}, errors {res['outage_errors']} (target 0 mock, 0 errors: "
        f"{mark(res['outage_mock'] == 0 and res['outage_errors'] == 0)})"
    )
    fresh = res["fresh_again_s"]
    slowest = max((v[0] if v[0] is not None else float("inf")) - v[1] for v in fresh.values())
    print(
        "fresh again after the warehouse is back (s, TTL): "
        + ", ".join(f"{w.removeprefix('b-')} {v[0]} ({v[1]})" for w, v in fresh.items())
    )
    print(f"  every tile within one TTL: {mark(slowest <= 0)}")
    print("\n" + json.dumps(res))
