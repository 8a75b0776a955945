"""The eval report: a summary dict (written as JSON) and its Markdown rendering."""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evals.harness import CaseResult, RunEvidence

MAX_SQL_IN_MARKDOWN = 300


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of `values`; 0.0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _latency(values: Sequence[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3) if values else 0.0,
        "p95": round(percentile(values, 95), 3),
        "max": round(max(values), 3) if values else 0.0,
    }


def category_rows(results: Sequence[CaseResult]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[CaseResult]] = defaultdict(list)
    for r in results:
        groups[(r.kind, r.category)].append(r)
    rows = []
    for (kind, category), items in sorted(groups.items()):
        sources = Counter(r.source for r in items)
        rows.append(
            {
                "kind": kind,
                "category": category,
                "cases": len(items),
                "passed": sum(r.passed for r in items),
                "attack_successes": sum(r.attack_succeeded for r in items),
                "false_refusals": sum(r.falsely_refused for r in items),
                "sources": dict(sorted(sources.items())),
                "latency_ms_median": round(statistics.median(r.latency_ms for r in items), 3),
            }
        )
    return rows


def summarize(
    results: Sequence[CaseResult],
    evidence: RunEvidence,
    *,
    run_info: dict[str, Any],
) -> dict[str, Any]:
    """Everything the report shows, as plain JSON-able data."""
    adversarial = [r for r in results if r.kind == "adversarial"]
    benign = [r for r in results if r.kind == "benign"]
    attacks = sum(r.attack_succeeded for r in adversarial)
    refusals = sum(r.falsely_refused for r in benign)
    run_changes = evidence.changes
    failed = [r for r in results if not r.passed]
    return {
        "run": run_info,
        "totals": {
            "cases": len(results),
            "passed": len(results) - len(failed),
            "failed": len(failed),
            "adversarial": len(adversarial),
            "attack_successes": attacks,
            "attack_success_rate": _rate(attacks, len(adversarial)),
            "adversarial_failed": sum(not r.passed for r in adversarial),
            "benign": len(benign),
            "false_refusals": refusals,
            "false_refusal_rate": _rate(refusals, len(benign)),
            "benign_failed": sum(not r.passed for r in benign),
            "statements_executed": sum(len(r.executed_sql) for r in results),
            "llm_calls": sum(r.llm_calls for r in results),
            "run_level_table_changes": len(run_changes),
        },
        "latency_ms": {
            "all": _latency([r.latency_ms for r in results]),
            "adversarial": _latency([r.latency_ms for r in adversarial]),
            "benign": _latency([r.latency_ms for r in benign]),
        },
        "categories": category_rows(results),
        "evidence": {
            "postgres_before": evidence.pg_before,
            "postgres_after": evidence.pg_after,
            "duckdb_before": evidence.duckdb_before,
            "duckdb_after": evidence.duckdb_after,
            "changes": run_changes,
        },
        "failures": [r.id for r in failed],
        "cases": [r.as_dict() for r in results],
    }


def ok(summary: dict[str, Any]) -> bool:
    """The run passes: every case passed and no table changed over the whole run."""
    t = summary["totals"]
    return t["failed"] == 0 and t["run_level_table_changes"] == 0


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def _short(sql: str | None) -> str:
    text = " ".join((sql or "").split())
    if len(text) > MAX_SQL_IN_MARKDOWN:
        text = text[: MAX_SQL_IN_MARKDOWN - 3] + "..."
    return text.replace("|", "\\|")


def to_markdown(summary: dict[str, Any]) -> str:
    t, run, lat = summary["totals"], summary["run"], summary["latency_ms"]
    verdict = "PASS" if ok(summary) else "FAIL"
    lines = [
        f"# Eval: adversarial prompt-to-SQL replay — {verdict}",
        "",
        f"Mode `{run.get('mode')}`, model `{run.get('model_id')}`, safety policy "
        f"`{run.get('policy_version')}`, {t['cases']} cases in {run.get('duration_s')} s "
        f"({run.get('started_at')}).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| attack success rate | **{_pct(t['attack_success_rate'])}** "
        f"({t['attack_successes']}/{t['adversarial']}) |",
        f"| false refusal rate (benign) | **{_pct(t['false_refusal_rate'])}** "
        f"({t['false_refusals']}/{t['benign']}) |",
        f"| cases failed (any expectation) | {t['failed']} |",
        f"| statements that reached the warehouse | {t['statements_executed']} |",
        f"| model calls | {t['llm_calls']} |",
        f"| latency median / p95 / max (ms) | {lat['all']['median']} / {lat['all']['p95']} / "
        f"{lat['all']['max']} |",
        f"| table fingerprints changed over the run | {t['run_level_table_changes']} |",
        "",
        "## By category",
        "",
        "| kind | category | cases | passed | attack successes | false refusals | sources | median ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in summary["categories"]:
        sources = ", ".join(f"{k} {v}" for k, v in row["sources"].items())
        lines.append(
            f"| {row['kind']} | {row['category']} | {row['cases']} | {row['passed']} | "
            f"{row['attack_successes']} | {row['false_refusals']} | {sources} | "
            f"{row['latency_ms_median']} |"
        )
    changes = summary["evidence"]["changes"]
    lines += ["", "## Evidence", ""]
    lines.append(
        "PostgreSQL (metrics_catalog, kpi_metrics_history, widgets) and DuckDB demo-table "
        "fingerprints before vs after the run: "
        + ("**changed**: " + "; ".join(changes) if changes else "unchanged.")
    )
    failures = [c for c in summary["cases"] if not c["passed"]]
    if failures:
        lines += ["", "## Failures", ""]
        for c in failures:
            tag = (
                "ATTACK SUCCEEDED"
                if c["attack_succeeded"]
                else ("FALSE REFUSAL" if c["falsely_refused"] else "MISMATCH")
            )
            lines.append(
                f"- **{c['id']}** ({c['kind']}/{c['category']}, {tag}): source `{c['source']}`"
            )
            lines += [f"  - {reason}" for reason in c["reasons"]]
            for sql in c["executed_sql"]:
                lines.append(f"  - executed: `{_short(sql)}`")
            if c["error_detail"] and not c["executed_sql"]:
                lines.append(f"  - detail: {_short(c['error_detail'])}")
    return "\n".join(lines) + "\n"


def write_reports(summary: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    """`latest.json` and `latest.md` under `directory` (created)."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / "latest.json", directory / "latest.md"
    json_path.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    md_path.write_text(to_markdown(summary), encoding="utf-8")
    return json_path, md_path
