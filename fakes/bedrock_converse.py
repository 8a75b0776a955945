"""A local Bedrock Runtime Converse API server for tests (stdlib only, loopback only).

It speaks the wire protocol botocore uses (rest-json): `POST /model/{modelId}/converse`
with the Converse request body, answered with the Converse response shape, or an AWS
JSON error (HTTP status, `x-amzn-ErrorType: <Code>:<namespace>` header, body
`{"message": ...}`), from which botocore builds a `ClientError` with that code.

    with ConverseServer() as srv:
        srv.script(ToolCall(sql="SELECT 1 LIMIT 1"), EXPIRED_TOKEN)   # queued replies
        gen = BedrockSqlGenerator(model_id=MODEL_ID, region="us-east-1",
                                  endpoint_url=srv.url, credentials=DUMMY_CREDENTIALS)
        ...
        srv.requests[0].tool_config, srv.requests[0].system_text

Replies are taken from the scripted queue first, then from `responder(request)` if set
(e.g. replaying recorded answers by question), then the `default` reply.

Grounding turns (a request that forces the `express_intent` tool: the question as a data
intent over the catalog) are recorded in `grounding_requests` and answered from their own
queue (`script_intents(IntentCall(...), NO_METRIC, THROTTLED...)`), then
`intent_responder(request)` if set, then `intent_default` (the model says no metric fits), so
a script of SQL turns is unchanged by the grounding turn that precedes each of them.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from adapters.bedrock import AwsCredentials

MODEL_ID = "anthropic.claude-3-5-sonnet-20240620-v1:0"
REGION = "us-east-1"
DUMMY_CREDENTIALS = AwsCredentials("AKIDTESTFAKE00000000", "fake-secret-key-for-tests")
GOOD_SQL = (
    "SELECT region, count(DISTINCT claim_id) AS value FROM main.claims.claim_events "
    "WHERE event_type = 'filed' GROUP BY region ORDER BY value DESC LIMIT 100"
)
DROP_SQL = "DROP TABLE main.claims.devices"


# ------------------------------------------------------------------ replies


@dataclass(frozen=True)
class ToolCall:
    """The model calls a tool. `input` overrides the `{sql, rationale}` input verbatim."""

    sql: str = GOOD_SQL
    rationale: str = "Counts distinct filed claims per region."
    name: str = "submit_sql"
    input: Any = None
    input_tokens: int = 812
    output_tokens: int = 64
    cache_read_tokens: int = 0  # > 0: a prompt-cache hit (usage.cacheReadInputTokens)
    cache_write_tokens: int = 0


@dataclass(frozen=True)
class IntentCall:
    """The model calls `express_intent` (a toolUse block): this intent, or no metric fits."""

    metric_id: str = ""
    dimensions: tuple[str, ...] = ()
    time_range: str = "last_30d"
    grain: str = "none"
    filters: tuple[dict[str, Any], ...] = ()
    limit: int | None = None
    fits: bool = True
    reason: str = "The metric answers the question."

    def as_tool_call(self) -> ToolCall:
        args: dict[str, Any] = {"fits": self.fits, "reason": self.reason}
        if self.fits:
            args |= {k: v for k, v in vars(self).items() if k not in args and v is not None}
            args |= {"dimensions": list(self.dimensions), "filters": list(self.filters)}
        return ToolCall(name=INTENT_TOOL, input=args, input_tokens=640, output_tokens=48)


INTENT_TOOL = "express_intent"
NO_METRIC = IntentCall(fits=False, reason="No catalog metric answers this question.")


@dataclass(frozen=True)
class Text:
    """The model answers in plain text, with no tool call."""

    text: str = "I think you should query the claims table."
    input_tokens: int = 812
    output_tokens: int = 12


@dataclass(frozen=True)
class Intervened:
    """A guardrail blocked the input: stopReason guardrail_intervened, the blocked-input
    message as the model's text, and the guardrail trace."""

    text: str = "Sorry, the model cannot answer this question."
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


@dataclass(frozen=True)
class AwsError:
    status: int
    code: str
    message: str


@dataclass(frozen=True)
class Slow:
    """Wait `seconds` (cut short when the server stops), then send `then`."""

    seconds: float
    then: Reply = field(default_factory=ToolCall)


@dataclass(frozen=True)
class Raw:
    """Any status, headers and JSON body: for shapes the other replies do not cover."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


Reply = ToolCall | IntentCall | Text | Intervened | AwsError | Slow | Raw

EXPIRED_TOKEN = AwsError(
    403, "ExpiredTokenException", "The security token included in the request is expired"
)
ACCESS_DENIED = AwsError(
    403, "AccessDeniedException", "You don't have access to the model with the specified model ID."
)
THROTTLED = AwsError(
    429, "ThrottlingException", "Too many requests, please wait before trying again."
)
UNAVAILABLE = AwsError(
    503, "ServiceUnavailableException", "Bedrock is unable to process your request."
)
MODEL_NOT_READY = AwsError(
    429, "ModelNotReadyException", "The model is not ready to serve inference requests."
)


# ------------------------------------------------------------------ recorded requests


@dataclass(frozen=True)
class RecordedRequest:
    model_id: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def system_text(self) -> str:
        return "\n".join(b.get("text", "") for b in self.body.get("system", []))

    @property
    def user_text(self) -> str:
        """Text of the last user message (the question framing)."""
        users = [m for m in self.body.get("messages", []) if m.get("role") == "user"]
        if not users:
            return ""
        return "\n".join(b.get("text", "") for b in users[-1].get("content", []))

    @property
    def tool_config(self) -> dict[str, Any]:
        return dict(self.body.get("toolConfig") or {})

    @property
    def forced_tool(self) -> str | None:
        return ((self.tool_config.get("toolChoice") or {}).get("tool") or {}).get("name")

    @property
    def inference_config(self) -> dict[str, Any]:
        return dict(self.body.get("inferenceConfig") or {})

    @property
    def guardrail_config(self) -> dict[str, Any]:
        return dict(self.body.get("guardrailConfig") or {})

    @property
    def system_blocks(self) -> list[dict[str, Any]]:
        return list(self.body.get("system") or [])


Responder = Callable[[RecordedRequest], Reply]


def converse_body(reply: ToolCall | Text | Intervened) -> dict[str, Any]:
    """The Converse response JSON for a model answer (or a guardrail intervention)."""
    trace: dict[str, Any] | None = None
    if isinstance(reply, Intervened):
        block: dict[str, Any] = {"text": reply.text}
        stop = "guardrail_intervened"
        trace = {
            "guardrail": {
                "inputAssessment": {
                    "fake-guardrail": {
                        "topicPolicy": {
                            "topics": [{"name": "Denied", "type": "DENY", "action": "BLOCKED"}]
                        }
                    }
                }
            }
        }
    elif isinstance(reply, ToolCall):
        tool_input = (
            reply.input
            if reply.input is not None
            else {"sql": reply.sql, "rationale": reply.rationale}
        )
        block = {
            "toolUse": {
                "toolUseId": f"tooluse_{uuid.uuid4().hex[:20]}",
                "name": reply.name,
                "input": tool_input,
            }
        }
        stop = "tool_use"
    else:
        block = {"text": reply.text}
        stop = "end_turn"
    usage: dict[str, Any] = {
        "inputTokens": reply.input_tokens,
        "outputTokens": reply.output_tokens,
        "totalTokens": reply.input_tokens + reply.output_tokens,
    }
    cache_read = getattr(reply, "cache_read_tokens", 0)
    cache_write = getattr(reply, "cache_write_tokens", 0)
    if cache_read or cache_write:
        usage |= {"cacheReadInputTokens": cache_read, "cacheWriteInputTokens": cache_write}
        usage["totalTokens"] += cache_read + cache_write
    body: dict[str, Any] = {
        "output": {"message": {"role": "assistant", "content": [block]}},
        "stopReason": stop,
        "usage": usage,
        "metrics": {"latencyMs": 420},
    }
    if trace is not None:
        body["trace"] = trace
    return body


# ------------------------------------------------------------------ server


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection: nothing lingers at shutdown

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        parts = self.path.split("?", 1)[0].strip("/").split("/")
        if len(parts) != 3 or parts[0] != "model" or parts[2] != "converse":
            self._send(
                Raw(
                    404,
                    {"message": f"unknown operation {self.path}"},
                    {"x-amzn-ErrorType": "UnknownOperationException:"},
                )
            )
            return
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._send(AwsError(400, "SerializationException", "request body is not JSON"))
            return
        request = RecordedRequest(
            model_id=unquote(parts[1]),
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        owner = self.server.owner
        reply = owner._record_and_choose(request)
        while isinstance(reply, Slow):
            if owner._stopping.wait(reply.seconds):
                return  # shutting down: drop the connection
            reply = reply.then
        self._send(reply.as_tool_call() if isinstance(reply, IntentCall) else reply)

    def _send(self, reply: Reply) -> None:
        if isinstance(reply, ToolCall | Text | Intervened):
            status, body, headers = 200, converse_body(reply), {}
        elif isinstance(reply, AwsError):
            status, body = reply.status, {"message": reply.message}
            headers = {
                "x-amzn-ErrorType": f"{reply.code}:http://internal.amazon.com/coral/com.amazon.bedrock/"
            }
        elif isinstance(reply, Raw):
            status, body, headers = reply.status, reply.body, reply.headers
        else:  # pragma: no cover - Slow is unwrapped by the caller
            raise TypeError(reply)
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
            self.server.owner._count_reply()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (read timeout)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: ConverseServer


class ConverseServer:
    """A threaded Converse API server on 127.0.0.1 (port 0); use as a context manager."""

    def __init__(self, *, default: Reply | None = None, responder: Responder | None = None) -> None:
        self.default: Reply = default if default is not None else ToolCall()
        self.responder: Responder | None = responder
        self.requests: list[RecordedRequest] = []
        self.grounding_requests: list[RecordedRequest] = []
        self.intent_default: Reply = NO_METRIC
        self.intent_responder: Responder | None = None
        self._intents: deque[Reply] = deque()
        self.replies_sent = 0  # responses fully written (a request in flight is not counted)
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- scripting
    def script(self, *replies: Reply) -> None:
        """Queue replies for the next requests, in order; then responder/default apply."""
        with self._lock:
            self._queue.extend(replies)

    def script_intents(self, *replies: Reply) -> None:
        """Queue replies for the next grounding turns, in order."""
        with self._lock:
            self._intents.extend(replies)

    def reset(self) -> None:
        """Forget queued replies, recorded requests and the responders."""
        with self._lock:
            self._queue.clear()
            self._intents.clear()
            self.requests.clear()
            self.grounding_requests.clear()
            self.responder = None
            self.intent_responder = None
            self.intent_default = NO_METRIC

    def _record_and_choose(self, request: RecordedRequest) -> Reply:
        if request.forced_tool == INTENT_TOOL:
            with self._lock:
                self.grounding_requests.append(request)
                if self._intents:
                    return self._intents.popleft()
            if self.intent_responder is not None:
                return self.intent_responder(request)
            return self.intent_default
        with self._lock:
            self.requests.append(request)
            if self._queue:
                return self._queue.popleft()
        if self.responder is not None:
            return self.responder(request)
        return self.default

    def _count_reply(self) -> None:
        with self._lock:
            self.replies_sent += 1

    # -- lifecycle
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("server not started")
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> ConverseServer:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-converse", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ConverseServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
