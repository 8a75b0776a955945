"""Seed the resolver database: metric catalog, demo widgets and demo KPI history.

- `metrics_catalog` is upserted from config/metrics.yaml (the file is authoritative; a row
  is only rewritten when something changed, so re-seeding does not fire NOTIFY for nothing).
- `widgets` from config/widgets.yaml (validated as a PUT is: adapters/registry/routing.py
  `widget_problems`), tenant `default`: only ids that are missing are inserted (each with
  its audit row, subject `resolver seed`), so edits made through the API survive. Asked
  for by command (`resolver seed`, trigger "command") they are inserted every time; at
  boot (trigger "boot", see SEED_DEMO) only into a database never seeded before, so a
  widget somebody deleted stays deleted across restarts. `seed_runs` records each seed.
- `kpi_metrics_history`: for every catalog metric whose table is kpi_metrics_history,
  realistic demo points are generated in SQL (generate_series), from `history_days` ago up
  to `now`. The noise is a hash of (metric, instant, series), not random(): a point's value
  depends only on them, so the same `now` always gives the same history (the accuracy
  benchmark's gold answers, evals/accuracy, pin it). Re-seeding tops up the gap since the metric's last point, so a later
  `make run` still shows fresh data and nothing is duplicated.

Everything runs in one transaction holding an advisory lock, so two instances seeding at
once neither interleave nor double the history.

CLI: `python -m adapters.pg_seed [CONNINFO] [CONFIG_DIR]` (defaults: $DATABASE_URL, ./config).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg.types.json import Json, Jsonb
from pydantic import ValidationError

from adapters.postgres import HISTORY_TABLE
from adapters.registry.audit import AuditEntry, append_audit
from adapters.registry.routing import widget_problems
from adapters.registry.snapshot import spec_digest
from adapters.registry.store import CATALOG_COLUMNS, lock_widget, metric_from_row
from domain.config import (
    METRICS_FILE,
    WIDGETS_FILE,
    first_error,
    load_catalog,
    load_widgets,
    read_routing,
)
from domain.identity import DEFAULT_TENANT
from domain.models import MetricDef

logger = logging.getLogger(__name__)

SEED_LOCK_KEY = 0x5744525F53454544  # "WDR_SEED"
SEED_AUTHOR = AuditEntry(DEFAULT_TENANT, "resolver seed")  # who the audit log names
ROUTING_FILE = "metric_routing.yaml"
# "command": asked for (`resolver seed`); "boot": SEED_DEMO at start-up (widgets only once).
SeedTrigger = Literal["command", "boot"]

# The demo values of each dimension key (the keys of kpi_metrics_history.dimensions).
DIMENSION_VALUES: Mapping[str, tuple[str, ...]] = {
    "team": ("platform", "payments", "mobile", "data"),
    "severity": ("critical", "high", "medium", "low"),
    "region": ("northeast", "southeast", "midwest", "southwest", "west"),
    "service": ("billing", "claims-api", "auth", "notifications"),
    "channel": ("phone", "chat", "store", "app"),
}


@dataclass(frozen=True, slots=True)
class HistoryProfile:
    """How one metric's demo series behave.

    Each series (one combination of dimension values) has a typical level
    `base * product(weights)`, modulated by a slow multi-week cycle (`trend_amp`), an
    intraday cycle peaking mid-afternoon UTC (`daily_amp`), a weekend dip (`weekly_amp`)
    and uniform noise (`noise`), all as fractions of the level.
    """

    step: timedelta
    base: float
    weights: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    trend_amp: float = 0.1
    daily_amp: float = 0.0
    weekly_amp: float = 0.0
    noise: float = 0.1
    decimals: int = 0
    lo: float = 0.0
    hi: float | None = None


PROFILES: Mapping[str, HistoryProfile] = {
    # open issues snapshot per team x severity, hourly: ~40 in total
    "active_issues_count": HistoryProfile(
        step=timedelta(hours=1),
        base=2.2,
        weights={
            "severity": {"critical": 0.4, "high": 1.0, "medium": 2.0, "low": 1.6},
            "team": {"platform": 1.3, "payments": 1.0, "mobile": 0.9, "data": 0.7},
        },
        trend_amp=0.15,
        daily_amp=0.25,
        weekly_amp=0.15,
        noise=0.3,
    ),
    # claims being worked per region, hourly: ~1,150 in total
    "claims_in_progress_count": HistoryProfile(
        step=timedelta(hours=1),
        base=240.0,
        weights={
            "region": {
                "northeast": 1.2,
                "southeast": 1.0,
                "midwest": 0.8,
                "southwest": 0.7,
                "west": 1.1,
            }
        },
        trend_amp=0.08,
        daily_amp=0.08,
        weekly_amp=0.1,
        noise=0.04,
    ),
    # USD avoided per region per day: ~180k over a month
    "cost_avoided_mtd": HistoryProfile(
        step=timedelta(days=1),
        base=1300.0,
        weights={
            "region": {
                "northeast": 1.25,
                "southeast": 1.0,
                "midwest": 0.85,
                "southwest": 0.75,
                "west": 1.15,
            }
        },
        trend_amp=0.12,
        weekly_amp=0.35,
        noise=0.2,
        decimals=2,
    ),
    # critical alerts in each 15-minute window per service: mostly 0-2
    "critical_alerts_count_15min": HistoryProfile(
        step=timedelta(minutes=15),
        base=0.7,
        weights={"service": {"billing": 1.0, "claims-api": 1.5, "auth": 0.8, "notifications": 0.6}},
        trend_amp=0.3,
        daily_amp=0.5,
        noise=1.0,
    ),
    # share of next-best-action recommendations taken per channel, hourly (percent)
    "nba_taken_pct": HistoryProfile(
        step=timedelta(hours=1),
        base=55.0,
        weights={"channel": {"phone": 1.12, "chat": 0.88, "store": 1.0, "app": 0.95}},
        trend_amp=0.05,
        daily_amp=0.06,
        weekly_amp=0.04,
        noise=0.08,
        decimals=1,
        hi=100.0,
    ),
}
DEFAULT_PROFILE = HistoryProfile(step=timedelta(hours=1), base=100.0, daily_amp=0.1)


@dataclass(frozen=True, slots=True)
class SeedReport:
    metrics_upserted: int  # catalog rows inserted or changed
    widgets_inserted: int
    widgets_skipped: int  # already present (left as they are), or not re-added at boot
    history_rows: dict[str, int]  # rows added per metric by this call

    @property
    def history_total(self) -> int:
        return sum(self.history_rows.values())


# ------------------------------------------------------------------------------ config


# ------------------------------------------------------------------------------ history


def series_for(metric: MetricDef, profile: HistoryProfile) -> list[dict[str, Any]]:
    """Every combination of the metric's dimension values, with its typical level."""
    dims = metric.definition.dimensions
    value_lists = [DIMENSION_VALUES.get(d, (f"{d}_1", f"{d}_2")) for d in dims]
    out: list[dict[str, Any]] = []
    for combo in itertools.product(*value_lists):
        level = profile.base
        for dim, val in zip(dims, combo, strict=True):
            level *= profile.weights.get(dim, {}).get(val, 1.0)
        out.append({"dims": dict(zip(dims, combo, strict=True)), "base": level})
    return out


def align_down(ts: datetime, step: timedelta) -> datetime:
    """Floor `ts` to the step grid anchored at the Unix epoch (steps line up across runs)."""
    step_s = step.total_seconds()
    return datetime.fromtimestamp(math.floor(ts.timestamp() / step_s) * step_s, tz=UTC)


def history_window(
    last: datetime | None, now: datetime, step: timedelta, history_days: int
) -> tuple[datetime, datetime] | None:
    """[first, last] timestamps to generate, or None when the metric is up to date."""
    floor = align_down(now - timedelta(days=history_days), step)
    start = floor if last is None else max(align_down(last, step) + step, floor)
    return (start, now) if start <= now else None


_GENERATE_SQL = """
INSERT INTO kpi_metrics_history (metric_name, recorded_at, value, dimensions)
SELECT %(metric)s, ts,
       round(greatest(%(lo)s::float8, least(coalesce(%(hi)s::float8, 'Infinity'::float8),
           s.base
           * (1 + %(trend)s::float8 * sin(2 * pi() * extract(epoch FROM ts) / (86400 * 61.0)))
           * (1 + %(daily)s::float8 * sin(2 * pi() * (extract(epoch FROM ts) / 3600.0 - 9) / 24))
           * (1 - %(weekly)s::float8 * (extract(isodow FROM ts AT TIME ZONE 'UTC') >= 6)::int)
           * (1 + %(noise)s::float8 * (2 * (('x' || substr(md5(%(metric)s::text || ':'
               || extract(epoch FROM ts)::text || ':' || s.dims::text), 1, 8))::bit(32)::bigint
               / 4294967296.0) - 1))
       ))::numeric, %(decimals)s::int)::float8,
       s.dims
FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz, %(step)s::interval) AS ts
CROSS JOIN jsonb_to_recordset(%(series)s::jsonb) AS s(dims jsonb, base float8)
"""


async def _top_up_history(
    conn: psycopg.AsyncConnection, metric: MetricDef, now: datetime, history_days: int
) -> int:
    profile = PROFILES.get(metric.name, DEFAULT_PROFILE)
    cur = await conn.execute(
        "SELECT max(recorded_at) FROM kpi_metrics_history WHERE metric_name = %s", (metric.name,)
    )
    row = await cur.fetchone()
    window = history_window(row[0] if row else None, now, profile.step, history_days)
    if window is None:
        return 0
    cur = await conn.execute(
        _GENERATE_SQL,
        {
            "metric": metric.name,
            "start": window[0],
            "end": window[1],
            "step": profile.step,
            "series": Jsonb(series_for(metric, profile)),
            "lo": profile.lo,
            "hi": profile.hi,
            "trend": profile.trend_amp,
            "daily": profile.daily_amp,
            "weekly": profile.weekly_amp,
            "noise": profile.noise,
            "decimals": profile.decimals,
        },
    )
    return cur.rowcount


# ------------------------------------------------------------------------------ catalog


_UPSERT_METRIC = """
INSERT INTO metrics_catalog AS m
    (name, description, unit, owner, definition, last_validated_at, governance_status, updated_at)
VALUES (%(name)s, %(description)s, %(unit)s, %(owner)s, %(definition)s, %(last_validated_at)s,
        %(governance_status)s, now())
ON CONFLICT (name) DO UPDATE SET
    description = EXCLUDED.description,
    unit = EXCLUDED.unit,
    owner = EXCLUDED.owner,
    definition = EXCLUDED.definition,
    governance_status = EXCLUDED.governance_status,
    last_validated_at = coalesce(EXCLUDED.last_validated_at, m.last_validated_at),
    updated_at = now()
WHERE (m.description, m.unit, m.owner, m.definition, m.governance_status,
       m.last_validated_at)
      IS DISTINCT FROM
      (EXCLUDED.description, EXCLUDED.unit, EXCLUDED.owner, EXCLUDED.definition,
       EXCLUDED.governance_status, coalesce(EXCLUDED.last_validated_at, m.last_validated_at))
"""


def metric_row(metric: MetricDef) -> dict[str, Any]:
    """The metrics_catalog row of a metric (definition stored in full, defaults included)."""
    return {
        "name": metric.name,
        "description": metric.description,
        "unit": metric.unit,
        "owner": metric.owner,
        "definition": Jsonb(metric.definition.model_dump(mode="json")),
        "last_validated_at": metric.last_validated_at,
        "governance_status": metric.governance_status,
    }


async def _history_metrics(conn: psycopg.AsyncConnection) -> list[MetricDef]:
    """Catalog metrics (from the database, so user-added ones too) that read the history table."""
    cur = await conn.execute(
        f"SELECT {CATALOG_COLUMNS} FROM metrics_catalog WHERE definition->>'table' = %s ORDER BY name",
        (HISTORY_TABLE,),
    )
    out: list[MetricDef] = []
    for row in await cur.fetchall():
        try:
            out.append(metric_from_row(row))
        except ValidationError as exc:
            logger.warning(
                "not seeding history for catalog metric %r: %s", row[0], first_error(exc)
            )
    return out


def load_seed_config(config_dir: Path) -> tuple[dict[str, MetricDef], dict[str, Any]]:
    """The catalog and demo widgets of `config_dir`, each widget checked as a PUT is
    (ValueError naming every widget and its problem)."""
    metrics = load_catalog(config_dir / METRICS_FILE)
    widgets = load_widgets(config_dir / WIDGETS_FILE)
    routing, _ = read_routing(config_dir / ROUTING_FILE)  # bad entries: boot validation
    problems = [
        f"{WIDGETS_FILE}: widget {wid!r}: {err}"
        for wid, spec in widgets.items()
        for err in widget_problems(spec, wid, metrics, routing)
    ]
    if problems:
        raise ValueError("; ".join(problems))
    return metrics, widgets


async def seed(
    conninfo: str,
    config_dir: Path,
    *,
    now: datetime | None = None,
    history_days: int = 90,
    trigger: SeedTrigger = "command",
) -> SeedReport:
    """Upsert the catalog, insert missing demo widgets (at boot: only into a database never
    seeded), top up demo history to `now`. ValueError when the config files are invalid."""
    metrics, widgets = await asyncio.to_thread(load_seed_config, config_dir)
    now = (now or datetime.now(UTC)).astimezone(UTC)

    async with (
        await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn,
        conn.transaction(),
    ):
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SEED_LOCK_KEY,))
        upserted = 0
        for metric in metrics.values():
            cur = await conn.execute(_UPSERT_METRIC, metric_row(metric))
            upserted += cur.rowcount
        seeded_before = await (await conn.execute("SELECT 1 FROM seed_runs LIMIT 1")).fetchone()
        inserted = 0
        if trigger == "command" or seeded_before is None:
            for wid, spec in widgets.items():
                inserted += await _insert_widget(conn, wid, spec)
        history = {
            m.name: await _top_up_history(conn, m, now, history_days)
            for m in await _history_metrics(conn)
        }
        await conn.execute(
            "INSERT INTO seed_runs (trigger, widgets_inserted, history_rows) VALUES (%s, %s, %s)",
            (trigger, inserted, sum(history.values())),
        )
    report = SeedReport(
        metrics_upserted=upserted,
        widgets_inserted=inserted,
        widgets_skipped=len(widgets) - inserted,
        history_rows=history,
    )
    logger.info("seeded (%s): %s", trigger, report)
    return report


async def _insert_widget(conn: psycopg.AsyncConnection, widget_id: str, spec: Any) -> int:
    """Insert a missing demo widget with its audit row, under the widget's write lock (so
    the audit chain stays whole beside concurrent PUTs). 1 when inserted, else 0."""
    await lock_widget(conn, DEFAULT_TENANT, widget_id)
    cur = await conn.execute(
        "INSERT INTO widgets (tenant, id, spec) VALUES (%s, %s, %s)"
        " ON CONFLICT (tenant, id) DO NOTHING",
        (DEFAULT_TENANT, widget_id, Json(spec.model_dump(mode="json"))),
    )
    if cur.rowcount != 1:
        return 0
    await append_audit(conn, SEED_AUTHOR, "widget.create", widget_id, None, spec_digest(spec))
    return 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    conninfo = args[0] if args else os.environ.get("DATABASE_URL", "")
    config_dir = Path(args[1]) if len(args) > 1 else Path("config")
    if not conninfo:
        print("usage: python -m adapters.pg_seed CONNINFO [CONFIG_DIR]", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    report = asyncio.run(seed(conninfo, config_dir, trigger="command"))
    print(
        f"catalog rows changed: {report.metrics_upserted}, widgets inserted: "
        f"{report.widgets_inserted} (kept {report.widgets_skipped}), "
        f"history rows added: {report.history_total}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
