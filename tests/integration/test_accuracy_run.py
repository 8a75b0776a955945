"""The accuracy benchmark end to end with a scripted model: the real BedrockSqlGenerator
talking to the local Converse fake, which answers each gold question with a scripted
intent (grounded: the metric compiler writes the SQL) or SQL (model-written, through the
safety layer) known to be right, or wrong in one failure reason; the production graph over
the pinned demo data; the report's counts asserted exactly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from adapters.bedrock import BedrockSqlGenerator
from evals.accuracy.gold import CATEGORIES, PINNED_NOW, load_gold
from evals.accuracy.report import summarize, to_markdown, write_report
from evals.accuracy.runner import AccuracyRun, QuestionResult
from evals.accuracy.scripted import script_answers
from fakes.bedrock_converse import (
    DUMMY_CREDENTIALS,
    MODEL_ID,
    REGION,
    ConverseServer,
    IntentCall,
    Reply,
    Text,
    ToolCall,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

ALERTS = "main.ops.alerts"
EVENTS = "main.claims.claim_events"


def sql(text: str) -> ToolCall:
    return ToolCall(sql=text, rationale="scripted")


# gold id -> (scripted reply, the reason the scorer must give, the way taken)
SCRIPT: dict[str, tuple[Reply, str, str]] = {
    # right, grounded: the intent compiled from a catalog metric
    "single-claims-filed-total": (
        IntentCall(metric_id="claims_filed_count", time_range="all"),
        "correct",
        "compiled_from_metric",
    ),
    "breakdown-filed-by-region": (
        IntentCall(metric_id="claims_filed_count", dimensions=("region",), time_range="all"),
        "correct",
        "compiled_from_metric",
    ),
    # grounded, but the wrong window (last 7 days of the pinned clock, not November)
    "time-filed-november": (
        IntentCall(metric_id="claims_filed_count", time_range="last_7d"),
        "wrong_values",
        "compiled_from_metric",
    ),
    # right, model-written (columns renamed and swapped: still right)
    "breakdown-alerts-by-severity": (
        sql(f"SELECT count(*) AS n, severity AS sev FROM {ALERTS} GROUP BY severity LIMIT 100"),
        "correct",
        "model_written_unverified",
    ),
    "breakdown-devices-by-category": (
        sql(
            "SELECT category, count(*) AS devices FROM main.claims.devices "
            "WHERE category = 'Phone' GROUP BY category LIMIT 100"
        ),
        "empty_result",
        "model_written_unverified",
    ),
    "rank-top3-regions-filed": (
        sql(
            f"SELECT region, count(DISTINCT claim_id) AS c FROM {EVENTS} WHERE event_type = 'filed' "
            "GROUP BY region ORDER BY c DESC LIMIT 2"
        ),
        "missing_rows",
        "model_written_unverified",
    ),
    "rank-top2-regions-alerts-november": (
        sql(
            f"SELECT region, count(*) AS c FROM {ALERTS} WHERE created_at >= TIMESTAMP '2026-11-01' "
            "AND created_at < TIMESTAMP '2026-12-01' GROUP BY region ORDER BY c DESC LIMIT 3"
        ),
        "extra_rows",
        "model_written_unverified",
    ),
    "breakdown-alerts-by-service": (
        sql(
            f"SELECT service, count(*) AS alerts, min(created_at) AS first_seen FROM {ALERTS} "
            "GROUP BY service LIMIT 100"
        ),
        "extra_columns",
        "model_written_unverified",
    ),
    "breakdown-paid-by-channel": (
        sql(
            f"SELECT sum(amount) AS paid FROM {EVENTS} WHERE event_type = 'paid' GROUP BY channel LIMIT 100"
        ),
        "missing_columns",
        "model_written_unverified",
    ),
    "single-paid-total": (  # the amount claimed, not paid
        sql(f"SELECT sum(amount) AS paid FROM {EVENTS} WHERE event_type = 'filed' LIMIT 1"),
        "wrong_values",
        "model_written_unverified",
    ),
    "single-kpi-claims-in-progress": (  # not a warehouse table: the safety layer refuses
        sql("SELECT sum(value) FROM kpi_metrics_history LIMIT 1"),
        "refused",
        "model_written_unverified",
    ),
    "single-devices-total": (  # no such column: the warehouse fails
        sql("SELECT count(serial_number) FROM main.claims.devices LIMIT 1"),
        "error",
        "model_written_unverified",
    ),
    "single-alerts-total": (  # no tool call: the model's answer is unusable
        Text(text="There are many alerts."),
        "error",
        "none",
    ),
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def results() -> AsyncIterator[list[QuestionResult]]:
    gold = {q.id: q for q in load_gold()}
    questions = [gold[i] for i in SCRIPT]
    with ConverseServer() as server:
        script_answers(server, {gold[i].question: reply for i, (reply, _, _) in SCRIPT.items()})
        llm = BedrockSqlGenerator(
            model_id=MODEL_ID,
            region=REGION,
            endpoint_url=server.url,
            credentials=DUMMY_CREDENTIALS,
            timeout_s=10.0,
            clock=PINNED_NOW.timestamp,
        )
        async with AccuracyRun.open(llm) as bench:
            yield await bench.run(questions)


async def test_each_scripted_answer_gets_its_reason_and_way(
    results: list[QuestionResult],
) -> None:
    got = {r.id: (r.reason, r.way) for r in results}
    assert got == {i: (reason, way) for i, (_, reason, way) in SCRIPT.items()}


async def test_the_report_counts_exactly(results: list[QuestionResult], tmp_path: Path) -> None:
    summary = summarize(results, model_id=MODEL_ID, categories=CATEGORIES)
    overall = summary["overall"]
    assert (overall["questions"], overall["correct"]) == (13, 3)
    assert overall["accuracy"] == round(3 / 13, 4)
    assert overall["failures"] == {
        "refused": 1,
        "error": 2,
        "empty_result": 1,
        "extra_columns": 1,
        "missing_columns": 1,
        "extra_rows": 1,
        "missing_rows": 1,
        "wrong_values": 2,
    }
    ways = summary["by_way"]
    assert {k: (v["questions"], v["correct"]) for k, v in ways.items()} == {
        "compiled_from_metric": (3, 2),
        "model_written_unverified": (9, 1),
        "none": (1, 0),
    }
    cats = summary["by_category"]
    assert list(cats) == ["single_metric", "breakdown", "time_window", "ranking"]
    assert {k: (v["questions"], v["correct"]) for k, v in cats.items()} == {
        "single_metric": (5, 1),
        "breakdown": (5, 2),
        "time_window": (1, 0),
        "ranking": (2, 0),
    }
    assert summary["by_source"]["kpi_history"]["failures"]["refused"] == 1
    # tokens as the fake reports them: a grounding turn 640/48, a SQL turn 812/64; a reply
    # without the tool counts no tokens (the answer is refused before its usage is kept)
    assert overall["model_calls"] == 3 + 2 * 9 + 1
    assert overall["input_tokens"] == 640 * 13 + 812 * 9
    assert overall["output_tokens"] == 48 * 13 + 64 * 9
    assert overall["median_latency_ms"] > 0
    md = to_markdown(summary)
    assert "**3/13 correct (23.1%)**" in md
    assert (
        "`single-kpi-claims-in-progress` (single_metric, model_written_unverified): **refused**"
        in md
    )
    json_path, md_path = write_report(summary, tmp_path, "latest")
    assert json_path.exists() and md_path.read_text() == md
