"""The model side of an eval run: recorded answers replayed by the local Converse server,
the real generator keeping its raw answers (--record), and the recordings files."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage

from adapters.bedrock import BedrockSqlGenerator
from domain.ports import Generation, GenerationRequest, Grounding, GroundingRequest
from evals.cases import Case

RECORDINGS_DIR = Path(__file__).parent / "recordings"


# ------------------------------------------------------------------------------ model replies


def converse_reply(response: dict[str, Any] | None) -> Any:
    """A recorded model answer as a reply of the local Converse server."""
    from fakes.bedrock_converse import Text, ToolCall

    if response is None:
        return ToolCall(sql="SELECT 'no recording for this case' AS error LIMIT 1")
    if "tool" in response:
        tool = response["tool"]
        return ToolCall(name=str(response.get("tool_name", "submit_sql")), input=dict(tool))
    return Text(text=str(response["text"]))


def response_of(message: AIMessage) -> dict[str, Any]:
    """A model message in the dataset's `model_response` shape (for --record)."""
    calls = message.tool_calls
    if calls:
        out: dict[str, Any] = {"tool": dict(calls[0]["args"])}
        if calls[0]["name"] != "submit_sql":
            out["tool_name"] = calls[0]["name"]
        if len(calls) > 1:
            out["extra_tool_calls"] = [{"name": c["name"], "args": c["args"]} for c in calls[1:]]
        return out
    return {"text": str(message.text)}


class RecordingBedrockSqlGenerator(BedrockSqlGenerator):
    """The real generator, keeping the raw answer of its last call (for --record).
    `calls` counts questions put to the model: a grounding turn and the SQL turn after it
    (no metric fitted) are one."""

    last_response: dict[str, Any] | None = None
    calls: int = 0
    _after_grounding: bool = False

    async def ground(self, request: GroundingRequest) -> Grounding:
        self.calls += 1
        self._after_grounding = True
        return await super().ground(request)

    async def generate(self, request: GenerationRequest) -> Generation:
        if not self._after_grounding:
            self.calls += 1
        self._after_grounding = False
        return await super().generate(request)

    async def _call(self, messages: Any, runnable: Any = None) -> AIMessage:
        self.last_response = None
        message = await super()._call(messages, runnable)
        self.last_response = response_of(message)
        return message


# ------------------------------------------------------------------------------ recordings


def recordings_path(model_id: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in model_id)
    return RECORDINGS_DIR / f"{safe}.jsonl"


def save_recordings(
    path: Path, model_id: str, recorded: dict[str, dict[str, Any]], cases: Sequence[Case]
) -> int:
    """Write (merge) live answers: one line per case id {id, question, model_id,
    recorded_at, model_response}. Returns how many lines the file holds."""
    existing = load_recording_lines(path) if path.exists() else {}
    now = datetime.now(UTC).isoformat()
    questions = {c.id: c.question for c in cases}
    for case_id, response in recorded.items():
        existing[case_id] = {
            "id": case_id,
            "question": questions.get(case_id),
            "model_id": model_id,
            "recorded_at": now,
            "model_response": response,
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(json.dumps(existing[k], ensure_ascii=False) + "\n" for k in sorted(existing)),
        encoding="utf-8",
    )
    return len(existing)


def load_recording_lines(path: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            item = json.loads(line)
            out[item["id"]] = item
    return out


def load_recordings(path: Path) -> dict[str, dict[str, Any]]:
    """{case id: model_response} from a recordings file written by --record."""
    return {k: v["model_response"] for k, v in load_recording_lines(path).items()}
