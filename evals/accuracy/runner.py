"""Ask the gold set's questions through the production path and score the answers.

Each question is a free-text question widget (`claims_insights`, time range `all`: the
question's own words set the window) resolved by the compiled resolution graph with the
service's own wiring (`service.wiring.open_resources`): grounded first (the model's intent
compiled from a catalog metric), else model-written SQL through the safety layer, run on
the embedded lakehouse. The demo data and the service's clock are pinned at
`gold.PINNED_NOW`; every question gets a fresh cache (no reuse between questions).

The model is whatever `SqlGenerator` is given: the real `BedrockSqlGenerator` against
Bedrock (`make eval-accuracy`) or against the local Converse fake replaying scripted
answers (tests). `MeteredGenerator` counts its calls and tokens per question.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

from adapters.cache import MemoryTTLCache
from domain.access import UNRESTRICTED
from domain.failures import FailureKind
from domain.models import WidgetSpec
from domain.ports import (
    Generation,
    GenerationRequest,
    Grounding,
    GroundingRequest,
    SqlGenerator,
)
from evals.accuracy.gold import PINNED_NOW, GoldQuestion, pinned_data
from evals.accuracy.scoring import Answer, Reason, score
from graph.builder import build_graph
from graph.context import Context
from graph.state import State
from service.settings import Settings
from service.wiring import open_resources

QUESTION_METRIC = "claims_insights"  # the catalog's free-text question metric
# failure kinds that are the service declining to answer (the rest are errors)
REFUSED_KINDS = frozenset(
    {FailureKind.safety_violation, FailureKind.llm_refused, FailureKind.invalid_intent}
)
# the model cannot be reached at all: a run stops here rather than score every question wrong
UNREACHABLE_KINDS = frozenset({FailureKind.bedrock_unavailable, FailureKind.bedrock_unconfigured})
LIVE_SOURCES = frozenset({"databricks", "postgres", "rollup"})


@dataclass
class MeteredGenerator:
    """A `SqlGenerator` that counts the calls and tokens of the wrapped one."""

    inner: SqlGenerator
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    model_id: str = ""

    def __post_init__(self) -> None:
        self.model_id = self.inner.model_id

    def _count(self, answer: Generation | Grounding) -> None:
        self.calls += 1
        self.input_tokens += answer.input_tokens or 0
        self.output_tokens += answer.output_tokens or 0

    async def generate(self, request: GenerationRequest) -> Generation:
        gen = await self.inner.generate(request)
        self._count(gen)
        return gen

    async def ground(self, request: GroundingRequest) -> Grounding:
        grounding = await self.inner.ground(request)
        self._count(grounding)
        return grounding

    def snapshot(self) -> tuple[int, int, int]:
        return self.calls, self.input_tokens, self.output_tokens


@dataclass
class QuestionResult:
    id: str
    category: str
    source: str
    question: str
    reason: Reason
    gold_index: int | None
    detail: str
    way: str  # compiled_from_metric | model_written_unverified | verified | none
    answer_source: str  # the response's source: databricks, or the failure kind
    generated_sql: str | None
    row_count: int
    latency_ms: float
    model_calls: int
    input_tokens: int
    output_tokens: int

    @property
    def correct(self) -> bool:
        return self.reason == "correct"


class ModelUnreachable(RuntimeError):
    """The model could not be asked at all (credentials, access, endpoint): no accuracy."""


def question_spec(question: str) -> WidgetSpec:
    return WidgetSpec.model_validate(
        {
            "title": "accuracy benchmark",
            "kind": "table",
            "data_intent": {
                "metric_id": QUESTION_METRIC,
                "question": question,
                "time_range": "all",
            },
            "mock_data": [{"value": 0}],
        }
    )


def to_answer(response: dict[str, Any]) -> Answer:
    """The scorer's view of a response: its rows, or a refusal, or an error."""
    source = str(response.get("source", "error"))
    if source in LIVE_SOURCES and response.get("executed"):
        columns = [c["name"] for c in response.get("schema") or []]
        return Answer.from_dicts(columns, list(response.get("data") or []))
    detail = f"{source}: {response.get('error_detail') or ''}".strip()
    if source in {k.value for k in REFUSED_KINDS}:
        return Answer("refused", detail=detail)
    return Answer("error", detail=detail)


def way_taken(out: dict[str, Any]) -> str:
    generation = out.get("generation") or {}
    return str(out.get("trust") or generation.get("way") or "none")


class AccuracyRun:
    """The service wired over the pinned demo data, asking one model. Use `open()`."""

    def __init__(self, context: Context, model: MeteredGenerator) -> None:
        self.context = context
        self.model = model
        # the whole state out (the way taken, the generation), not only the response
        self.graph = build_graph(output_schema=State).compile()

    @classmethod
    @asynccontextmanager
    async def open(
        cls, llm: SqlGenerator, settings: Settings | None = None
    ) -> AsyncIterator[AccuracyRun]:
        settings = settings or Settings()
        model = MeteredGenerator(llm)
        # always a fresh database (never DATABASE_URL's): the history is seeded at the pin
        async with pinned_data() as data:
            run_settings = settings.model_copy(
                update={
                    "database_url": data.database_url,
                    "redis_url": None,
                    "auto_migrate": False,
                    "seed_demo": False,  # seeded at the pinned instant already
                    "pg_pool_max": 4,
                    "llm_rate_limit": "1000000/minute",  # one question after another
                }
            )
            async with open_resources(
                run_settings,
                llm=model,
                warehouse=data.warehouse,
                clock=PINNED_NOW.timestamp,
            ) as resources:
                yield cls(resources.context, model)

    async def ask(self, gold: GoldQuestion) -> QuestionResult:
        context = replace(self.context, cache=MemoryTTLCache())  # no reuse between questions
        before = self.model.snapshot()
        started = time.perf_counter()
        try:
            out = await self.graph.ainvoke(
                {
                    "widget_id": f"accuracy-{gold.id}",
                    "spec": question_spec(gold.question),
                    "access": UNRESTRICTED,
                },
                context=context,
            )
            response = dict(out.get("response") or {})
        except Exception as exc:  # a bug in the graph: an error answer, the run goes on
            out, response = {}, {"source": "error", "error_detail": f"{type(exc).__name__}: {exc}"}
        latency_ms = (time.perf_counter() - started) * 1000
        calls, tokens_in, tokens_out = (
            a - b for a, b in zip(self.model.snapshot(), before, strict=True)
        )
        if response.get("source") in {k.value for k in UNREACHABLE_KINDS}:
            raise ModelUnreachable(f"{response['source']}: {response.get('error_detail')}")
        verdict = score(to_answer(response), gold.answers())
        return QuestionResult(
            id=gold.id,
            category=gold.category,
            source=gold.source,
            question=gold.question,
            reason=verdict.reason,
            gold_index=verdict.gold_index,
            detail=verdict.detail,
            way=way_taken(out),
            answer_source=str(response.get("source", "error")),
            generated_sql=response.get("generated_sql"),
            row_count=int(response.get("row_count") or 0),
            latency_ms=round(latency_ms, 1),
            model_calls=calls,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
        )

    async def run(
        self,
        questions: Sequence[GoldQuestion],
        on_result: Callable[[QuestionResult], None] | None = None,
    ) -> list[QuestionResult]:
        results = []
        for q in questions:
            result = await self.ask(q)
            results.append(result)
            if on_result is not None:
                on_result(result)
        return results
