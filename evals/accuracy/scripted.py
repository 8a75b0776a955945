"""A scripted model for the benchmark's own tests: the local Converse fake answering each
gold question with a scripted reply (an `IntentCall` for the grounding turn, or any other
reply, e.g. a `ToolCall` with SQL, for the SQL turn), matched by the question's text."""

from __future__ import annotations

from collections.abc import Mapping

from fakes.bedrock_converse import NO_METRIC, IntentCall, RecordedRequest, Reply, Text

UNSCRIPTED = Text(text="(no scripted answer for this question)")


def _question_of(request: RecordedRequest, answers: Mapping[str, Reply]) -> str | None:
    text = request.user_text
    return next((q for q in answers if f"<question>\n{q.strip()}\n</question>" in text), None)


def script_answers(server: object, answers: Mapping[str, Reply]) -> None:
    """Point a `fakes.bedrock_converse.ConverseServer` at `answers` (question -> reply).
    An `IntentCall` answers the grounding turn (the metric compiler writes the SQL); any
    other reply answers the SQL turn, the grounding turn hearing that no metric fits."""

    def on_grounding(request: RecordedRequest) -> Reply:
        q = _question_of(request, answers)
        reply = answers.get(q) if q is not None else None
        return reply if isinstance(reply, IntentCall) else NO_METRIC

    def on_sql(request: RecordedRequest) -> Reply:
        q = _question_of(request, answers)
        reply = answers.get(q) if q is not None else None
        return reply if reply is not None and not isinstance(reply, IntentCall) else UNSCRIPTED

    server.intent_responder = on_grounding  # type: ignore[attr-defined]
    server.responder = on_sql  # type: ignore[attr-defined]
