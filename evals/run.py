"""`python -m evals.run`: replay the eval cases through the resolution graph and report.

    python -m evals.run                          # replay recorded (fully obedient) answers
    python -m evals.run --filter encoded_payload # one category (or: adversarial / benign)
    python -m evals.run --limit 10
    python -m evals.run --live                   # ask the configured Bedrock model instead
    python -m evals.run --live --record          # ... and save its answers as recordings
    python -m evals.run --recordings evals/recordings/<model>.jsonl   # replay those

Exit status 0 when every case passed and no table changed; 1 otherwise; 2 for bad usage.
Reports: evals/reports/latest.md and latest.json (git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from evals.harness import (
    DEFAULT_DATASETS,
    CaseError,
    CaseResult,
    Harness,
    Mode,
    load_cases,
    load_recordings,
    recordings_path,
    save_recordings,
    select_cases,
)
from evals.report import ok, summarize, to_markdown, write_reports
from service.settings import Settings
from sqlsafety import POLICY_VERSION

REPORT_DIR = Path(__file__).parent / "reports"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m evals.run", description=__doc__.splitlines()[0])
    p.add_argument(
        "--filter", metavar="CATEGORY", help="only this category (or adversarial/benign)"
    )
    p.add_argument("--limit", type=int, metavar="N", help="at most N cases (after --filter)")
    p.add_argument(
        "--dataset",
        action="append",
        type=Path,
        metavar="PATH",
        help="JSONL dataset (repeatable; files named benign* hold benign cases)",
    )
    model = p.add_mutually_exclusive_group()
    model.add_argument(
        "--live", action="store_true", help="use the configured Bedrock model (BEDROCK_MODEL_ID)"
    )
    model.add_argument(
        "--recordings", type=Path, metavar="PATH", help="replay answers saved by --record"
    )
    p.add_argument(
        "--record",
        action="store_true",
        help="with --live: save the model's answers to evals/recordings/<model>.jsonl",
    )
    p.add_argument("--report-dir", type=Path, default=REPORT_DIR)
    p.add_argument(
        "--statement-timeout", type=float, default=3.0, help="DuckDB statement timeout (s)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--quiet", action="store_true", help="do not print the Markdown summary")
    args = p.parse_args(argv)
    if args.record and not args.live:
        p.error("--record needs --live")
    if args.limit is not None and args.limit < 1:
        p.error("--limit must be at least 1")
    return args


async def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    cases = select_cases(
        load_cases(args.dataset or DEFAULT_DATASETS), category=args.filter, limit=args.limit
    )
    if not cases:
        raise CaseError(f"no cases match --filter {args.filter!r}")
    mode: Mode = "live" if args.live else ("recorded" if args.recordings else "replay")
    recordings = load_recordings(args.recordings) if args.recordings else None
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    results: list[CaseResult] = []
    async with Harness.open(
        mode=mode,
        settings=settings,
        statement_timeout_s=args.statement_timeout,
        recordings=recordings,
    ) as harness:
        model_id = harness.context.llm.model_id if harness.context.llm else None
        with tqdm(
            total=len(cases),
            desc="eval",
            unit="case",
            # None: shown on a terminal only (CI logs get the summary, not 200 redraws)
            disable=True if args.no_progress else None,
            file=sys.stderr,
        ) as bar:

            def progress(result: CaseResult) -> None:
                results.append(result)
                bar.update(1)
                bar.set_postfix(failed=sum(not r.passed for r in results))

            await harness.run(cases, on_result=progress)
    if args.record and model_id:
        path = recordings_path(model_id)
        n = save_recordings(path, model_id, harness.recorded, cases)
        print(f"recorded {len(harness.recorded)} answers into {path} ({n} total)", file=sys.stderr)
    run_info = {
        "mode": mode,
        "model_id": model_id,
        "policy_version": POLICY_VERSION,
        "started_at": started_at,
        "duration_s": round(time.perf_counter() - t0, 2),
        "filter": args.filter,
        "limit": args.limit,
        "datasets": [str(p) for p in (args.dataset or DEFAULT_DATASETS)],
        "recordings": str(args.recordings) if args.recordings else None,
        "max_rows": harness.max_rows,
    }
    return summarize(results, harness.evidence, run_info=run_info)


def main(argv: Sequence[str] | None = None, settings: Settings | None = None) -> int:
    args = parse_args(argv)
    # Degraded widgets are the point here: the graph's per-widget warnings are noise.
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = asyncio.run(run(args, settings or Settings()))
    except CaseError as exc:
        print(f"evals: bad dataset: {exc}", file=sys.stderr)
        return 2
    json_path, md_path = write_reports(summary, args.report_dir)
    if not args.quiet:
        print(to_markdown(summary))
    print(f"reports: {md_path} {json_path}", file=sys.stderr)
    return 0 if ok(summary) else 1


if __name__ == "__main__":
    sys.exit(main())
