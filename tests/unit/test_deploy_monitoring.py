"""deploy/: the Grafana dashboard and the Prometheus alert rules reference only metric names
(and labels of those metrics) that the service really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from observability import metrics as m

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy/grafana/widget-data-resolver.json"
ALERTS = ROOT / "deploy/prometheus/alerts.yml"
NAME_RE = re.compile(r"\b(wdr_[a-z0-9_]+)\b")
MATCHERS_RE = re.compile(r"\b(wdr_[a-z0-9_]+)\{([^}]*)\}")
BY_RE = re.compile(r"\bby\s*\(([^)]*)\)")


def _labels_of(sample_name: str) -> set[str]:
    for metric in vars(m).values():
        base = getattr(metric, "_name", None)
        if isinstance(base, str) and sample_name.startswith(base):
            suffix = sample_name[len(base) :]
            if suffix in ("", "_total", "_bucket", "_sum", "_count", "_created"):
                extra = {"le"} if suffix == "_bucket" else set()
                return set(metric._labelnames) | extra  # type: ignore[attr-defined]
    raise AssertionError(f"{sample_name} is not exported")


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]


def alert_exprs() -> list[str]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [r["expr"] for g in doc["groups"] for r in g["rules"]]


def test_the_files_hold_the_promised_panels_and_alerts() -> None:
    doc = yaml.safe_load(ALERTS.read_text())
    alerts = {r["alert"] for g in doc["groups"] for r in g["rules"] if "alert" in r}
    assert {
        "WidgetDegradedRatioHigh",
        "WidgetCacheHitRatioLow",
        "PostgresStatementP99High",
        "WarehouseStatementP99High",
    } <= alerts
    titles = {p["title"] for p in json.loads(DASHBOARD.read_text())["panels"]}
    assert {"Degraded ratio (mock answers / all)", "Cache hit ratio", "Node p99 by node"} <= titles


def test_every_referenced_metric_and_label_is_exported() -> None:
    exported = m.family_names()
    exprs = dashboard_exprs() + alert_exprs()
    assert len(exprs) > 20
    for expr in exprs:
        names = set(NAME_RE.findall(expr))
        assert names, f"no service metric in {expr!r}"
        assert names <= exported, f"{names - exported} not exported (in {expr!r})"
        allowed = set().union(*(_labels_of(n) for n in names))
        for name, body in MATCHERS_RE.findall(expr):
            for label in re.findall(r"([a-z_]+)\s*(?:=~|!~|!=|=)", body):
                assert label in _labels_of(name), f"{name} has no label {label!r}"
        for group in BY_RE.findall(expr):
            for label in filter(None, (x.strip() for x in group.split(","))):
                assert label in allowed, f"{label!r} is no label of {names}"


def test_the_checker_catches_a_misspelt_metric() -> None:
    assert "wdr_resolution_total" not in m.family_names()
    assert "wdr_resolutions_total" in m.family_names()
    assert "wdr_node_duration_seconds_bucket" in m.family_names()
