"""LLM SQL generation on AWS Bedrock (Converse API) through langchain-aws.

One `ChatBedrockConverse` client is built per generator (the constructor does no I/O).
`ChatBedrockConverse` has no native async path: its `ainvoke` runs the blocking boto3
`converse` call in the default executor, so the event loop is never blocked. botocore
timeouts bound the thread; an `asyncio.wait_for` guard bounds the caller.

The answer must come through the single forced tool `submit_sql`
(`adapters.prompting.TOOL_SPEC`); anything else is `llm_invalid_output`. The SQL is
returned as written (only surrounding whitespace trimmed): the safety layer judges it.

Error mapping (langchain-aws re-raises botocore's `ClientError` unchanged, except an
`AccessDeniedException` mentioning InvokeTool, which it wraps in a `ValueError` whose
`__cause__` is the `ClientError`):
- `ClientError` (auth, throttling, 5xx, validation...) -> `bedrock_unavailable`,
  except `ModelTimeoutException` -> `llm_timeout`; the detail names the AWS error code.
- connection failures, connect timeouts, missing credentials -> `bedrock_unavailable`.
- `ReadTimeoutError` or the overall deadline -> `llm_timeout`.
- a guardrail intervention (`stopReason: guardrail_intervened`) -> `llm_refused`.

Options: `guardrail_id`/`guardrail_version` guard the question (the last turn only:
`guard_last_turn_only`; guardrails do not evaluate tool-use input, so the SQL still
goes through the safety layer, always). `prompt_cache` makes the static part of the system
prompt (role, rules, schema) a cache point (default: on for the models that support it,
Anthropic Claude and Amazon Nova). `base_model_id` names the foundation model behind an
application inference profile ARN used as `model_id` (no lookup call at startup).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoAuthTokenError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
    SSOError,
    TokenRetrievalError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from langchain_aws import ChatBedrockConverse
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from opentelemetry import propagate
from pydantic import SecretStr

from adapters.prompting import (
    INTENT_TOOL_NAME,
    INTENT_TOOL_SPEC,
    TOOL_NAME,
    TOOL_SPEC,
    build_grounding_system,
    build_messages,
    build_system_parts,
    build_user,
    prompt_hash,
)
from domain.failures import FailureKind, GenerationFailure
from domain.ports import Generation, GenerationRequest, Grounding, GroundingRequest

_TIMEOUT_CODES = frozenset({"ModelTimeoutException"})
_CREDENTIAL_ERRORS: tuple[type[Exception], ...] = (
    NoCredentialsError,
    PartialCredentialsError,
    CredentialRetrievalError,
    TokenRetrievalError,
    NoAuthTokenError,
    SSOError,
)
_MAX_DETAIL = 300
_CACHING_MODELS = ("anthropic.claude", "amazon.nova")  # Bedrock prompt caching support
GUARDRAIL_INTERVENED = "guardrail_intervened"


_REGION_PREFIXES = ("us.", "eu.", "apac.", "global.", "us-gov.", "jp.", "au.", "ca.")


def base_model_provider(base_model_id: str) -> str:
    """'anthropic' for anthropic.claude-... (or a cross-region us.anthropic.claude-...)."""
    name = base_model_id.split("/")[-1]
    for prefix in _REGION_PREFIXES:
        name = name.removeprefix(prefix)
    return name.split(".", 1)[0]


def supports_prompt_cache(base_model: str) -> bool:
    return any(family in base_model.lower() for family in _CACHING_MODELS)


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    """Explicit static credentials (tests, or a secret store); else the standard AWS chain."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."


def inject_trace_context(request: Any, **_: Any) -> None:
    """botocore `before-send` hook: add `traceparent`/`tracestate` of the current span."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    for name, value in carrier.items():
        request.headers[name] = value


def client_error_failure(error: ClientError) -> GenerationFailure:
    """Map an AWS API error to a failure whose detail names the upstream code."""
    info = error.response.get("Error", {})
    code = str(info.get("Code") or "UnknownError")
    message = _short(str(info.get("Message") or error))
    kind = FailureKind.llm_timeout if code in _TIMEOUT_CODES else FailureKind.bedrock_unavailable
    return GenerationFailure(f"Bedrock {code}: {message}", kind=kind)


def tool_input(message: AIMessage, name: str) -> dict[str, Any]:
    """The input of the model's one call of tool `name`; raises llm_refused when a
    guardrail intervened, llm_invalid_output for anything else that is not that call."""
    if message.response_metadata.get("stopReason") == GUARDRAIL_INTERVENED:
        text = str(message.text).strip()
        raise GenerationFailure(
            f"Bedrock guardrail intervened: {_short(text) or '(no message)'}",
            kind=FailureKind.llm_refused,
        )
    calls = message.tool_calls
    if not calls:
        text = str(message.text).strip()
        raise GenerationFailure(
            f"model answered without calling {name}: {_short(text) or '(empty)'}",
            kind=FailureKind.llm_invalid_output,
        )
    if len(calls) != 1 or calls[0]["name"] != name:
        names = ", ".join(c["name"] for c in calls)
        raise GenerationFailure(
            f"expected one {name} call, got: {names}", kind=FailureKind.llm_invalid_output
        )
    return dict(calls[0]["args"])


def parse_tool_answer(message: AIMessage) -> tuple[str, str]:
    """(sql, rationale) from the model's `submit_sql` call (see `tool_input`)."""
    args = tool_input(message, TOOL_NAME)
    sql = args.get("sql")
    rationale = args.get("rationale", "")
    if not isinstance(sql, str) or not sql.strip():
        raise GenerationFailure(
            f"{TOOL_NAME} call has no SQL string", kind=FailureKind.llm_invalid_output
        )
    if not isinstance(rationale, str):
        raise GenerationFailure(
            f"{TOOL_NAME} rationale is not a string", kind=FailureKind.llm_invalid_output
        )
    return sql.strip(), rationale.strip()


def parse_intent_answer(message: AIMessage) -> tuple[dict[str, Any] | None, str]:
    """(intent, reason) from the model's `express_intent` call: the intent fields as given
    (the caller validates them against the catalog), None when the model says no metric
    fits. A call that is not `express_intent` raises as `tool_input` does."""
    args = tool_input(message, INTENT_TOOL_NAME)
    reason = args.pop("reason", "")
    fits = args.pop("fits", None)
    if not isinstance(reason, str) or not isinstance(fits, bool):
        raise GenerationFailure(
            f"{INTENT_TOOL_NAME} needs a boolean `fits` and a string `reason`",
            kind=FailureKind.llm_invalid_output,
        )
    return (args if fits else None), reason.strip()


def _token_counts(message: Any) -> dict[str, int | None]:
    """A reply's token counts (input, output, read from the prompt cache); None unknown."""
    usage = message.usage_metadata
    if not usage:
        return {"input_tokens": None, "output_tokens": None, "cache_read_tokens": None}
    return {
        "input_tokens": usage["input_tokens"],
        "output_tokens": usage["output_tokens"],
        "cache_read_tokens": (usage.get("input_token_details") or {}).get("cache_read"),
    }


class BedrockSqlGenerator:
    """`domain.ports.SqlGenerator` backed by a Bedrock model via the Converse API.

    `timeout_s` is botocore's read timeout (connect timeout: `min(connect_timeout_s,
    timeout_s)`); `max_attempts` counts calls in total (1 = no retry, so an outage or
    throttling fails fast and the widget degrades). Without `credentials` the standard
    AWS chain applies (env, profile, SSO, container/instance role, or a Bedrock API key
    in AWS_BEARER_TOKEN_BEDROCK). `provider` is needed only for a model ARN. `clock`
    resolves relative time ranges into the explicit bounds the prompt carries.
    """

    def __init__(
        self,
        *,
        model_id: str,
        region: str,
        endpoint_url: str | None = None,
        timeout_s: float = 20.0,
        max_tokens: int = 1024,
        credentials: AwsCredentials | None = None,
        max_attempts: int = 1,
        connect_timeout_s: float = 5.0,
        provider: str | None = None,
        clock: Callable[[], float] = time.time,
        guardrail_id: str | None = None,
        guardrail_version: str = "DRAFT",
        prompt_cache: bool | None = None,
        base_model_id: str | None = None,
    ) -> None:
        self.model_id = model_id
        self.timeout_s = timeout_s
        self._clock = clock
        config = Config(
            connect_timeout=min(connect_timeout_s, timeout_s),
            read_timeout=timeout_s,
            # botocore's retries "max_attempts" counts retries; "total_max_attempts" counts calls.
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
        )
        kwargs: dict[str, Any] = {}
        if credentials is not None:
            kwargs["aws_access_key_id"] = SecretStr(credentials.access_key_id)
            kwargs["aws_secret_access_key"] = SecretStr(credentials.secret_access_key)
            if credentials.session_token:
                kwargs["aws_session_token"] = SecretStr(credentials.session_token)
        if not provider and base_model_id and model_id.startswith("arn:"):
            provider = base_model_provider(base_model_id)
        if provider:
            kwargs["provider"] = provider
        if base_model_id:
            kwargs["base_model_id"] = base_model_id
        if guardrail_id:
            kwargs["guardrail_config"] = {
                "guardrailIdentifier": guardrail_id,
                "guardrailVersion": guardrail_version,
                "trace": "enabled",
            }
            kwargs["guard_last_turn_only"] = True
        self.guarded = bool(guardrail_id)
        self.prompt_cache = (
            supports_prompt_cache(base_model_id or model_id)
            if prompt_cache is None
            else prompt_cache
        )
        chat = ChatBedrockConverse(
            model=model_id,
            region_name=region,
            base_url=endpoint_url,  # alias of endpoint_url
            config=config,
            temperature=0.0,
            max_tokens=max_tokens,
            disable_streaming=True,  # plain Converse even under a streaming LangGraph run
            cache=False,
            **kwargs,
        )
        # W3C trace context on every Converse call: the caller's trace continues into Bedrock
        # (a no-op while no span is recording; tracing is off unless OTLP is configured)
        chat.client.meta.events.register(
            "before-send.bedrock-runtime.Converse", inject_trace_context
        )
        tool_config = {
            "tools": [{"toolSpec": TOOL_SPEC}],
            "toolChoice": {"tool": {"name": TOOL_NAME}},
        }
        # The tool is forced through a raw toolConfig: langchain-aws' bind_tools refuses
        # forced tool choice for models it does not know; Bedrock itself is the judge.
        self._runnable = chat.bind(toolConfig=tool_config)
        # grounding first: the question as a data intent over the catalog (forced tool too)
        self._grounding = chat.bind(
            toolConfig={
                "tools": [{"toolSpec": INTENT_TOOL_SPEC}],
                "toolChoice": {"tool": {"name": INTENT_TOOL_NAME}},
            }
        )
        # Overall guard: botocore's read timeout should fire first and free the thread.
        self._deadline_s = timeout_s * max_attempts + min(connect_timeout_s, timeout_s) + 1.0

    async def generate(self, request: GenerationRequest) -> Generation:
        now = datetime.fromtimestamp(self._clock(), tz=UTC)
        system, user = build_messages(request, now)
        digest = prompt_hash(system, user)
        started = time.perf_counter()
        message = await self._call([self._system_message(request, now), HumanMessage(content=user)])
        latency_ms = (time.perf_counter() - started) * 1000.0
        sql, rationale = parse_tool_answer(message)
        return Generation(
            sql=sql,
            rationale=rationale,
            model_id=self.model_id,
            prompt_hash=digest,
            latency_ms=latency_ms,
            **_token_counts(message),
        )

    async def ground(self, request: GroundingRequest) -> Grounding:
        """The question as a data intent over the catalog metrics, or None (no metric fits)."""
        system = build_grounding_system(request.metrics, request.max_rows)
        user = build_user(request.question)
        digest = prompt_hash(system, user, INTENT_TOOL_SPEC)
        started = time.perf_counter()
        message = await self._call(
            [SystemMessage(content=system), HumanMessage(content=user)], self._grounding
        )
        latency_ms = (time.perf_counter() - started) * 1000.0
        intent, reason = parse_intent_answer(message)
        return Grounding(
            intent=intent,
            reason=reason,
            model_id=self.model_id,
            prompt_hash=digest,
            latency_ms=latency_ms,
            **_token_counts(message),
        )

    def _system_message(self, request: GenerationRequest, now: datetime) -> SystemMessage:
        """The system prompt; with prompt caching, its static part ends in a cache point."""
        static, dynamic = build_system_parts(request, now)
        if not self.prompt_cache:
            return SystemMessage(content=f"{static}\n\n{dynamic}")
        blocks: list[str | dict[str, Any]] = [
            {"type": "text", "text": static},
            ChatBedrockConverse.create_cache_point(),
            {"type": "text", "text": dynamic},
        ]
        return SystemMessage(content=blocks)

    async def _call(
        self, messages: list[SystemMessage | HumanMessage], runnable: Any = None
    ) -> AIMessage:
        runnable = runnable if runnable is not None else self._runnable
        try:
            result = await asyncio.wait_for(runnable.ainvoke(messages), self._deadline_s)
        except TimeoutError as e:
            raise GenerationFailure(
                f"Bedrock did not answer within {self._deadline_s:.1f}s",
                kind=FailureKind.llm_timeout,
            ) from e
        except ClientError as e:
            raise client_error_failure(e) from e
        except ValueError as e:
            if isinstance(e.__cause__, ClientError):  # langchain-aws' InvokeTool hint
                raise client_error_failure(e.__cause__) from e
            raise
        except ReadTimeoutError as e:
            raise GenerationFailure(
                f"Bedrock read timeout after {self.timeout_s:g}s", kind=FailureKind.llm_timeout
            ) from e
        except (BotoConnectionError, HTTPClientError) as e:
            raise GenerationFailure(
                f"Bedrock unreachable: {type(e).__name__}: {_short(str(e))}",
                kind=FailureKind.bedrock_unavailable,
            ) from e
        except _CREDENTIAL_ERRORS as e:
            raise GenerationFailure(
                f"Bedrock credentials: {type(e).__name__}: {_short(str(e))}",
                kind=FailureKind.bedrock_unavailable,
            ) from e
        if not isinstance(result, AIMessage):  # pragma: no cover - a chat model returns AIMessage
            raise TypeError(f"unexpected result {type(result).__name__}")
        return result
