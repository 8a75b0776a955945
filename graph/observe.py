"""The graph's one observation hook: every node is wrapped once, in the builder.

After a node returns, its trace entry (`{node, ms, outcome}`, written by `nodes._common.traced`)
and its update feed the Prometheus families in `observability.metrics`: node duration and
outcome, cache lookups by result, backend statement duration and errors, safety rejections
by rule, LLM requests, latency and tokens, and (in degrade_or_return) the resolution by
backend, source and outcome. When tracing is on, the node runs inside a span (a child of the
request's span) carrying widget, metric, backend, source, cache hit, row count and failure
kind; the SQL only as a hash unless `record_sql` is set. With tracing off no span code runs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal, assert_never, cast

from langgraph.runtime import Runtime

from graph.context import Context
from graph.state import State
from nodes.cache_lookup import CacheOutcome
from nodes.degrade_or_return import AnswerOutcome
from observability import metrics as m
from observability.tracing import Tracing, sql_hash

NodeFn = Callable[[State, Runtime[Context]], Any]

ResolutionLabel = Literal["live", "cached", "shared", "stale", "mock", "dry_run"]
CacheResult = Literal["hit", "miss", "stale"]


def resolution_label(outcome: AnswerOutcome) -> ResolutionLabel:
    """degrade_or_return's outcome -> the `outcome` label of wdr_resolutions_total."""
    match outcome:
        case "live" | "cached" | "shared" | "dry_run":
            return outcome
        case "degraded":
            return "mock"
        case "last_good":  # the last good answer stood in for a failure
            return "stale"
        case _:
            assert_never(outcome)


def cache_result(outcome: CacheOutcome) -> CacheResult | None:
    """cache_lookup's outcome -> the `result` label of wdr_cache_lookups_total (None: no
    lookup of an answer, e.g. bypass_refresh or a background refresh)."""
    match outcome:
        case "hit" | "shared":  # shared: a lease follower found the leader's answer
            return "hit"
        case "miss" | "takeover":
            return "miss"
        case "stale" | "last_good":
            return "stale"
        case (
            "refresh_debounced"
            | "bypass_refresh"
            | "bypass_dry_run"
            | "shared_failure"
            | "refresh"
            | "skip_fresh"
            | "skip_backoff"
            | "skip_busy"
        ):
            return None
        case _:
            assert_never(outcome)


def lease_follower(outcome: CacheOutcome) -> Literal["served", "failure"] | None:
    """cache_lookup's outcome -> wdr_lease_followers_total's `result` (None: not a follower)."""
    if outcome == "shared":
        return "served"
    if outcome == "shared_failure":
        return "failure"
    return None


# LLM failures that mean a request was made (bedrock_unconfigured makes none)
LLM_REQUEST_FAILURES = frozenset({"bedrock_unavailable", "llm_timeout", "llm_invalid_output"})
# postgres_query failures that ran no statement
NO_STATEMENT = frozenset({"postgres_unmapped", "invalid_intent"})


def _entry(update: dict[str, Any], name: str) -> dict[str, Any]:
    for t in update.get("trace") or ():
        if t.get("node") == name:
            return t  # type: ignore[no-any-return]
    return {"node": name, "ms": 0.0, "outcome": "ok"}


def record_metrics(name: str, state: State, update: dict[str, Any], ctx: Context) -> None:
    """The metric side of one node run (pure function of state, update and context)."""
    entry = _entry(update, name)
    seconds, outcome = entry["ms"] / 1000.0, str(entry["outcome"])
    m.child(m.NODE_DURATION, name).observe(seconds)
    m.child(m.NODE_OUTCOMES, name, outcome).inc()
    failure = update.get("failure")
    if name == "cache_lookup":
        result = cache_result(cast(CacheOutcome, outcome))
        if result is not None:
            m.child(m.CACHE_LOOKUPS, result).inc()
        follower = lease_follower(cast(CacheOutcome, outcome))
        if follower is not None:
            m.LEASE_FOLLOWERS.labels(follower).inc()
    elif name == "postgres_query":
        if ctx.postgres is not None and outcome != "dry_run":
            kind = failure["kind"] if failure else None
            if kind not in NO_STATEMENT:
                m.BACKEND_DURATION.labels("postgres").observe(seconds)
                if kind:
                    m.BACKEND_ERRORS.labels("postgres", kind).inc()
    elif name == "databricks_execute":
        if ctx.warehouse is not None:
            backend = ctx.warehouse.name
            m.BACKEND_DURATION.labels(backend).observe(seconds)
            if failure:
                m.BACKEND_ERRORS.labels(backend, failure["kind"]).inc()
    elif name == "safety_check":
        verdict = update.get("safety") or {}
        if verdict.get("allowed") is False:
            m.SAFETY_REJECTIONS.labels(str(verdict.get("rule") or "unknown")).inc()
    elif name == "sql_generate":
        _record_llm(update, outcome, failure, seconds)
    elif name == "degrade_or_return" and state.get("widget_id") is not None:
        # (POST /v1/widgets/sql/generate runs the dry-run path with no widget: not counted)
        response = update.get("response") or {}
        resolution = (
            "stale" if response.get("stale") else resolution_label(cast(AnswerOutcome, outcome))
        )
        m.child(
            m.RESOLUTIONS,
            str(response.get("backend") or "none"),
            str(response.get("source") or "none"),
            resolution,
        ).inc()


def _seen(state: State) -> State:
    """What record_metrics reads of the state, as it was when the node ran."""
    widget = state.get("widget_id")
    return {} if widget is None else {"widget_id": widget}


def _record_llm(
    update: dict[str, Any], outcome: str, failure: dict[str, Any] | None, seconds: float
) -> None:
    gen = update.get("generation") or {}
    if outcome in ("llm", "grounded"):  # model-written, or the model's intent compiled
        m.LLM_REQUESTS.labels("ok").inc()
        m.LLM_DURATION.observe(float(gen.get("latency_ms") or seconds * 1000) / 1000.0)
        for direction in ("input", "output"):
            tokens = gen.get(f"{direction}_tokens")
            if tokens:
                m.LLM_TOKENS.labels(direction).inc(int(tokens))
    elif failure and failure["kind"] in LLM_REQUEST_FAILURES:
        m.LLM_REQUESTS.labels(failure["kind"]).inc()
        m.LLM_DURATION.observe(seconds)
    elif outcome == "reused_logged":  # the model was asked, failed, and the log answered
        m.LLM_REQUESTS.labels("failed").inc()
        m.LLM_DURATION.observe(seconds)


def span_attributes(
    name: str, state: State, update: dict[str, Any], *, record_sql: bool
) -> dict[str, Any]:
    entry = _entry(update, name)
    attrs: dict[str, Any] = {"wdr.node": name, "wdr.outcome": str(entry["outcome"])}
    widget = state.get("widget_id")
    if widget:
        attrs["wdr.widget_id"] = widget
    spec = state.get("spec")
    if spec is not None:
        attrs["wdr.metric_id"] = spec.data_intent.metric_id
    backend = update.get("backend") or state.get("backend")
    if backend:
        attrs["wdr.backend"] = backend
    if "cache_hit" in update:
        attrs["wdr.cache_hit"] = bool(update["cache_hit"])
    if "rows" in update:
        attrs["wdr.row_count"] = len(update["rows"])
    failure = update.get("failure")
    if failure:
        attrs["wdr.failure_kind"] = failure["kind"]
    response = update.get("response")
    if response:
        attrs["wdr.source"] = response["source"]
        attrs["wdr.row_count"] = response["row_count"]
        attrs["wdr.cache_hit"] = response["cache_hit"]
        attrs["wdr.live_data_unavailable"] = response["live_data_unavailable"]
    sql = update.get("generated_sql") or update.get("candidate_sql")
    if sql and name != "degrade_or_return":
        attrs["wdr.sql_hash"] = sql_hash(sql)
        if record_sql:
            attrs["db.query.text"] = sql
    if name == "postgres_query":
        attrs["db.system"] = "postgresql"
    safety = update.get("safety")
    if safety and safety.get("rule"):
        attrs["wdr.safety_rule"] = safety["rule"]
    return attrs


class GraphObserver:
    """Wraps each node for metrics and (when on) spans. Built once per service."""

    def __init__(self, *, tracing: Tracing | None = None, metrics: bool = True) -> None:
        self.tracing = tracing or Tracing()
        self.metrics = metrics

    @property
    def active(self) -> bool:
        return self.metrics or self.tracing.enabled

    def wrap(self, name: str, fn: NodeFn) -> NodeFn:
        tracer, metrics = self.tracing.tracer, self.metrics

        if tracer is None:

            @functools.wraps(fn)
            async def counted(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
                update: dict[str, Any] = await fn(state, runtime)
                # recorded at the loop's next turn (after the response goes out); of the
                # state, metrics read the widget only (the runner goes on changing it)
                m.later(record_metrics, name, _seen(state), update, runtime.context)
                return update

            return counted

        @functools.wraps(fn)
        async def traced(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
            with tracer.start_as_current_span(name) as span:
                update: dict[str, Any] = await fn(state, runtime)
                self._describe(span, name, state, update)
            if metrics:
                m.later(record_metrics, name, _seen(state), update, runtime.context)
            return update

        return traced

    def _describe(self, span: Any, name: str, state: State, update: dict[str, Any]) -> None:
        """A node's span attributes, and its status when the node recorded a failure."""
        from opentelemetry.trace import Status, StatusCode

        span.set_attributes(
            span_attributes(name, state, update, record_sql=self.tracing.record_sql)
        )
        failure = update.get("failure")
        if failure:
            span.set_status(Status(StatusCode.ERROR, failure["kind"]))
