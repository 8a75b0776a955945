"""LangSmith tracing of graph runs, through LangSmith's standard environment variables
(LANGSMITH_TRACING=true, LANGSMITH_API_KEY, LANGSMITH_ENDPOINT, LANGSMITH_PROJECT).

When tracing is on, the graph is invoked with one LangChainTracer whose client hides row
data: `rows`, `data` and `mock_data` anywhere in a run's inputs or outputs are replaced by a
count (`"<12 rows hidden>"`), so traces show the path, timings, SQL and failure kinds but
never a customer's rows. Off (no tracer, no client) when LANGSMITH_TRACING is unset.
"""

from __future__ import annotations

import os
from typing import Any

ROW_KEYS = frozenset({"rows", "data", "mock_data"})


def scrub(value: Any, _depth: int = 0) -> Any:
    """`value` with row data replaced by counts (pydantic models are dumped first)."""
    if _depth > 20:
        return "<nested too deeply>"
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        value = dump(mode="json")
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k in ROW_KEYS and isinstance(v, list):
                out[k] = f"<{len(v)} rows hidden>"
            else:
                out[k] = scrub(v, _depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [scrub(v, _depth + 1) for v in value]
    return value


def _hide(payload: dict[str, Any]) -> dict[str, Any]:
    scrubbed: dict[str, Any] = scrub(payload)
    return scrubbed


def _env(name: str) -> str | None:
    """LANGSMITH_<name>, or the older LANGCHAIN_<name>, read now (langsmith caches its own
    reads of the environment for the life of the process)."""
    return os.environ.get(f"LANGSMITH_{name}") or os.environ.get(f"LANGCHAIN_{name}") or None


def langsmith_enabled() -> bool:
    flag = _env("TRACING") or os.environ.get("LANGCHAIN_TRACING_V2") or ""
    return flag.strip().lower() == "true"


def langsmith_callbacks() -> list[Any] | None:
    """Callbacks for the graph's run config, or None when LangSmith tracing is off."""
    if not langsmith_enabled():
        return None
    from langchain_core.tracers.langchain import LangChainTracer
    from langsmith import Client

    client = Client(
        api_url=_env("ENDPOINT"),
        api_key=_env("API_KEY"),
        hide_inputs=_hide,
        hide_outputs=_hide,
    )
    return [LangChainTracer(client=client, project_name=_env("PROJECT"))]
