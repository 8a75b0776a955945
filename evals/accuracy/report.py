"""The accuracy report: per category, per way taken, per source; failure reasons, median
latency, tokens in and out; every question's verdict. JSON and Markdown (pure: no I/O but
`write_report`)."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from evals.accuracy.runner import QuestionResult
from evals.accuracy.scoring import FAILURE_REASONS

WAYS = ("compiled_from_metric", "model_written_unverified", "verified", "none")


def _group(results: Sequence[QuestionResult]) -> dict[str, Any]:
    n = len(results)
    correct = sum(r.correct for r in results)
    reasons = Counter(r.reason for r in results if not r.correct)
    latencies = [r.latency_ms for r in results]
    return {
        "questions": n,
        "correct": correct,
        "accuracy": round(correct / n, 4) if n else None,
        "failures": {reason: reasons.get(reason, 0) for reason in FAILURE_REASONS},
        "median_latency_ms": round(statistics.median(latencies), 1) if latencies else None,
        "input_tokens": sum(r.input_tokens for r in results),
        "output_tokens": sum(r.output_tokens for r in results),
        "model_calls": sum(r.model_calls for r in results),
    }


def _by(
    results: Sequence[QuestionResult], key: Callable[[QuestionResult], str], order: Sequence[str]
) -> dict[str, Any]:
    keys = [k for k in order if any(key(r) == k for r in results)]
    keys += sorted({key(r) for r in results} - set(keys))
    return {k: _group([r for r in results if key(r) == k]) for k in keys}


def summarize(
    results: Sequence[QuestionResult],
    *,
    model_id: str,
    categories: Sequence[str],
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "model_id": model_id,
        **(meta or {}),
        "overall": _group(results),
        "by_category": _by(results, lambda r: r.category, categories),
        "by_way": _by(results, lambda r: r.way, WAYS),
        "by_source": _by(results, lambda r: r.source, ("lakehouse", "kpi_history")),
        "questions": [asdict(r) for r in results],
    }


def _pct(acc: float | None) -> str:
    return "-" if acc is None else f"{100 * acc:.1f}%"


def _table(title: str, label: str, groups: dict[str, Any]) -> list[str]:
    head = ["", f"## {title}", ""]
    cols = ["questions", "correct", "accuracy", *FAILURE_REASONS, "median ms", "tokens in/out"]
    head += ["| " + " | ".join([label, *cols]) + " |"]
    head += ["|" + "---|" * (len(cols) + 1)]
    for name, g in groups.items():
        cells = [
            name,
            str(g["questions"]),
            str(g["correct"]),
            _pct(g["accuracy"]),
            *(str(g["failures"][r]) for r in FAILURE_REASONS),
            f"{g['median_latency_ms']:.0f}" if g["median_latency_ms"] is not None else "-",
            f"{g['input_tokens']}/{g['output_tokens']}",
        ]
        head.append("| " + " | ".join(cells) + " |")
    return head


def to_markdown(summary: dict[str, Any]) -> str:
    o = summary["overall"]
    lines = [
        f"# Accuracy benchmark: {summary['model_id']}",
        "",
        f"**{o['correct']}/{o['questions']} correct ({_pct(o['accuracy'])})**, "
        f"median latency {o['median_latency_ms']} ms, "
        f"tokens in/out {o['input_tokens']}/{o['output_tokens']} over {o['model_calls']} model calls.",
    ]
    for key in ("gold_file", "pinned_now", "started_at", "finished_at"):
        if key in summary:
            lines.append(f"- {key.replace('_', ' ')}: {summary[key]}")
    lines += _table("Per category", "category", summary["by_category"])
    lines += _table("Per way taken", "way", summary["by_way"])
    lines += _table("Per data source", "source", summary["by_source"])
    lines += ["", "## Questions not answered right", ""]
    wrong = [q for q in summary["questions"] if q["reason"] != "correct"]
    if not wrong:
        lines.append("None.")
    for q in wrong:
        lines.append(
            f"- `{q['id']}` ({q['category']}, {q['way']}): **{q['reason']}** - {q['detail']}"
        )
    return "\n".join(lines) + "\n"


def write_report(summary: dict[str, Any], directory: Path, stem: str) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / f"{stem}.json", directory / f"{stem}.md"
    json_path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    md_path.write_text(to_markdown(summary))
    return json_path, md_path
