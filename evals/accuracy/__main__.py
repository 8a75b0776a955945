"""`python -m evals.accuracy` (`make eval-accuracy`): the gold set against a real Bedrock model.

    BEDROCK_MODEL_ID=... AWS_REGION=... python -m evals.accuracy     # AWS credentials as usual
    python -m evals.accuracy --filter ranking --limit 5

Every question goes through the production path (grounded first, else model-written SQL
through the safety layer) over the demo data pinned at 2026-12-01; the answers are scored
by execution against the gold rows. Reports: evals/reports/accuracy/latest.json and
latest.md (git-ignored).

Exit status: 0 when the benchmark ran (whatever the accuracy), 2 without BEDROCK_MODEL_ID
or AWS credentials (nothing is run and no accuracy is reported), 3 when the model could not
be reached (credentials refused, no access, endpoint down: the run stops, no accuracy).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from evals.accuracy.gold import CATEGORIES, GOLD_FILE, PINNED_NOW, load_gold
from service.settings import Settings

REPORT_DIR = Path(__file__).resolve().parents[1] / "reports" / "accuracy"
NO_CREDENTIALS = 2
UNREACHABLE = 3


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m evals.accuracy", description=(__doc__ or "").splitlines()[0]
    )
    p.add_argument("--filter", choices=CATEGORIES, help="only this category")
    p.add_argument("--limit", type=int, metavar="N", help="at most N questions")
    p.add_argument("--gold", type=Path, default=GOLD_FILE, help="the gold set (YAML)")
    p.add_argument("--report-dir", type=Path, default=REPORT_DIR)
    p.add_argument("--quiet", action="store_true", help="do not print the Markdown report")
    return p.parse_args(argv)


def credentials_problem(settings: Settings) -> str | None:
    """Why a real model cannot be asked, or None. Looks only: no call is made."""
    if not settings.bedrock_model_id:
        return "BEDROCK_MODEL_ID is not set"
    if os.environ.get("AWS_BEARER_TOKEN_BEDROCK"):
        return None
    import boto3

    if boto3.Session().get_credentials() is None:
        return "no AWS credentials found (environment, profile, SSO or instance role)"
    return None


def real_model(settings: Settings) -> object:
    from adapters.bedrock import BedrockSqlGenerator

    assert settings.bedrock_model_id
    return BedrockSqlGenerator(
        model_id=settings.bedrock_model_id,
        region=settings.aws_region,
        endpoint_url=settings.bedrock_endpoint_url,
        timeout_s=settings.bedrock_timeout_s,
        max_attempts=3,  # throttling is retried: the benchmark asks one question after another
        clock=PINNED_NOW.timestamp,  # the prompt's time bounds at the pinned instant
        guardrail_id=settings.bedrock_guardrail_id,
        guardrail_version=settings.bedrock_guardrail_version,
        prompt_cache=settings.bedrock_prompt_cache,
        base_model_id=settings.bedrock_base_model_id,
    )


async def run(args: argparse.Namespace, settings: Settings) -> int:
    # imported here: the service's wiring is only needed once there is a model to ask
    from evals.accuracy.report import summarize, to_markdown, write_report
    from evals.accuracy.runner import AccuracyRun, ModelUnreachable, QuestionResult

    questions = load_gold(args.gold)
    if args.filter:
        questions = [q for q in questions if q.category == args.filter]
    if args.limit is not None:
        questions = questions[: args.limit]
    started = datetime.now(UTC)

    def progress(r: QuestionResult) -> None:
        print(f"{r.id}: {r.reason} ({r.way}, {r.latency_ms:.0f} ms)", file=sys.stderr)

    llm = real_model(settings)
    try:
        async with AccuracyRun.open(llm, settings) as bench:  # type: ignore[arg-type]
            results = await bench.run(questions, on_result=progress)
    except ModelUnreachable as exc:
        print(
            f"eval-accuracy: the model could not be reached ({exc}); no accuracy reported",
            file=sys.stderr,
        )
        return UNREACHABLE
    summary = summarize(
        results,
        model_id=str(settings.bedrock_model_id),
        categories=CATEGORIES,
        meta={
            "gold_file": str(args.gold),
            "pinned_now": PINNED_NOW.isoformat(),
            "started_at": started.isoformat(),
            "finished_at": datetime.now(UTC).isoformat(),
        },
    )
    json_path, md_path = write_report(summary, args.report_dir, "latest")
    if not args.quiet:
        print(to_markdown(summary))
    print(f"reports: {json_path} {md_path}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    settings = Settings()
    problem = credentials_problem(settings)
    if problem:
        print(
            f"eval-accuracy needs a real Bedrock model: {problem}. Set BEDROCK_MODEL_ID "
            "(and AWS_REGION) and AWS credentials (see README 'Accuracy benchmark'). "
            "Nothing was run; no accuracy is reported.",
            file=sys.stderr,
        )
        return NO_CREDENTIALS
    return asyncio.run(run(args, settings))


if __name__ == "__main__":
    sys.exit(main())
