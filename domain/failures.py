"""Failure kinds: the `source` of a degraded answer, and the exceptions adapters raise.

Adapters raise a `ResolverFailure` subclass carrying one of these kinds; nodes catch
`ResolverFailure` only and record it in state. Anything else is a bug and surfaces.
"""

from __future__ import annotations

from enum import StrEnum


class FailureKind(StrEnum):
    # routing / intent
    routing_missing = "routing_missing"
    invalid_intent = "invalid_intent"
    # postgres path
    postgres_unmapped = "postgres_unmapped"
    postgres_unavailable = "postgres_unavailable"
    postgres_timeout = "postgres_timeout"
    postgres_error = "postgres_error"
    # warehouse path
    safety_violation = "safety_violation"
    databricks_unavailable = "databricks_unavailable"
    databricks_auth = "databricks_auth"
    databricks_timeout = "databricks_timeout"
    databricks_error = "databricks_error"
    # LLM generation
    bedrock_unconfigured = "bedrock_unconfigured"
    bedrock_unavailable = "bedrock_unavailable"
    llm_timeout = "llm_timeout"
    llm_invalid_output = "llm_invalid_output"
    llm_rate_limited = "llm_rate_limited"  # the tenant spent its LLM budget (LLM_RATE_LIMIT)
    llm_refused = "llm_refused"  # a Bedrock guardrail intervened on the question


class ResolverFailure(Exception):
    """An expected failure with a degrade kind. `detail` is safe to show to the dashboard."""

    kind: FailureKind = FailureKind.postgres_error

    def __init__(self, detail: str, *, kind: FailureKind | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if kind is not None:
            self.kind = kind

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind.value!r}, detail={self.detail!r})"


class InvalidIntent(ResolverFailure):
    kind = FailureKind.invalid_intent

    def __init__(self, detail: str, *, problems: list[str] | None = None) -> None:
        super().__init__(detail)
        self.problems: tuple[str, ...] = tuple(problems or (detail,))


class PostgresFailure(ResolverFailure):
    kind = FailureKind.postgres_error


class WarehouseFailure(ResolverFailure):
    kind = FailureKind.databricks_error


class GenerationFailure(ResolverFailure):
    kind = FailureKind.llm_invalid_output
