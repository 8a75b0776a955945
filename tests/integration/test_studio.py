"""`langgraph dev` (what `make studio` runs), driven as LangGraph Studio drives it: with the
official SDK client (`langgraph_sdk`): the assistant and its schemas (the input form), a
thread, a run streamed with `stream_mode="updates"` and interrupted before `safety_check`,
its resume, bad input, and the server's own log (no unregistered
checkpoint types, a clean shutdown that leaves no temporary directory). Uses a fresh
database on the real PostgreSQL server; `LANGGRAPH_STRICT_MSGPACK=true` makes an
unregistered checkpoint type fail the resume (as a future LangGraph will)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.schema import StreamPart

from tests.support.servers import create_database, drop_database, entry_point, free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@dataclass
class Studio:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    tmp: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """Stop the server as Ctrl-C does; its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    db = create_database()
    port = free_port()
    work = tmp_path_factory.mktemp("studio")
    tmp = work / "tmp"  # the server's TMPDIR: the embedded lakehouse lives here
    tmp.mkdir()
    env = os.environ | {
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGGRAPH_NO_VERSION_CHECK": "true",
        "LANGGRAPH_STRICT_MSGPACK": "true",
        "DATABASE_URL": db,
        "SEED_DEMO": "true",  # a fresh database: the demo widgets
        "DATA_DIR": str(work),
        "TMPDIR": str(tmp),
    }
    env.pop("REDIS_URL", None)
    log_path = work / "studio.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [entry_point("langgraph"), "dev", "--no-browser", "--no-reload", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Studio(f"http://127.0.0.1:{port}", proc, log_path, tmp)
    try:
        deadline = time.monotonic() + 120
        while True:  # a condition wait: the server answers /ok, or it exited
            if proc.poll() is not None:
                raise AssertionError("langgraph dev exited:\n" + server.log()[-4000:])
            try:
                if httpx.get(server.url + "/ok", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("langgraph dev did not start:\n" + server.log()[-4000:])
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(0.2)  # ... or the next try
        yield server
    finally:
        server.stop()
        drop_database(db)


def updates(parts: Iterator[StreamPart]) -> list[tuple[str, dict[str, Any]]]:
    """(node, update) of each `updates` event, in order (`__interrupt__` included)."""
    out = []
    for part in parts:
        if part.event == "error":
            raise AssertionError(f"the run failed: {part.data}")
        if part.event == "updates":
            for node, update in part.data.items():
                out.append((node, update))
    return out


def test_the_assistant_has_an_input_form_with_descriptions(studio: Studio) -> None:
    client = get_sync_client(url=studio.url)
    (assistant,) = client.assistants.search(graph_id="resolver")
    schemas = client.assistants.get_schemas(assistant["assistant_id"])
    form = schemas["input_schema"]
    assert form is not None, studio.log()[-3000:]
    fields = form["properties"]
    assert set(fields) == {"widget_id", "refresh", "dry_run", "spec", "intent"}
    assert fields["widget_id"]["description"].startswith("Needed: ")
    assert all(fields[f].get("description") for f in fields), fields
    assert fields["refresh"]["type"] == fields["dry_run"]["type"] == "boolean"
    output = schemas["output_schema"]
    assert output is not None and {"response", "trace", "decided"} <= set(output["properties"])
    assert "typing_extensions.TypedDict" not in studio.log()


def test_stepping_shows_what_each_node_decided_and_resumes_after_an_interrupt(
    studio: Studio,
) -> None:
    client = get_sync_client(url=studio.url)
    thread = client.threads.create()
    first = updates(
        client.runs.stream(
            thread["thread_id"],
            "resolver",
            input={"widget_id": "claims-filed-by-region"},
            stream_mode="updates",
            interrupt_before=["safety_check"],
        )
    )
    assert [node for node, _ in first] == ["route", "cache_lookup", "sql_generate", "__interrupt__"]
    steps = {node: update for node, update in first}
    assert steps["route"]["decided"]["backend"] == "databricks"
    assert steps["route"]["decided"]["metric"] == "claims_filed_count"
    assert steps["cache_lookup"]["decided"]["cache_hit"] is False
    candidate = steps["sql_generate"]["decided"]["candidate_sql"]
    assert "main.claims.claim_events" in candidate
    state = client.threads.get_state(thread["thread_id"])
    assert state["next"] == ["safety_check"]
    # resume: the checkpoint (widget spec, metric, routing entry) is read back
    rest = updates(
        client.runs.stream(thread["thread_id"], "resolver", input=None, stream_mode="updates")
    )
    assert [node for node, _ in rest] == ["safety_check", "databricks_execute", "degrade_or_return"]
    steps = {node: update for node, update in rest}
    assert steps["safety_check"]["decided"]["safety"]["allowed"] is True
    assert steps["databricks_execute"]["decided"]["rows"] == "<5 rows hidden>"
    response = steps["degrade_or_return"]["response"]
    assert response["source"] == "databricks" and response["row_count"] == 5
    log = studio.log()
    assert "unregistered type" not in log and "Blocked deserialization" not in log, log[-3000:]


def test_a_postgres_widget_runs_to_its_answer(studio: Studio) -> None:
    client = get_sync_client(url=studio.url)
    out = client.runs.wait(None, "resolver", input={"widget_id": "open-issues-kpi"})
    assert isinstance(out, dict)
    assert out["response"]["source"] == "postgres" and out["response"]["row_count"] > 0
    assert [t["node"] for t in out["trace"]] == [
        "route",
        "cache_lookup",
        "postgres_query",
        "degrade_or_return",
    ]


def test_an_inline_intent_resolves_the_widget_another_way(studio: Studio) -> None:
    client = get_sync_client(url=studio.url)
    intent: dict[str, Any] = {"metric_id": "active_issues_count", "dimensions": ["severity"]}
    out = client.runs.wait(
        None, "resolver", input={"widget_id": "open-issues-kpi", "intent": intent}
    )
    assert isinstance(out, dict)
    assert {row["severity"] for row in out["response"]["data"]} == {
        "critical",
        "high",
        "medium",
        "low",
    }


def test_a_dry_run_generates_sql_without_running_it(studio: Studio) -> None:
    client = get_sync_client(url=studio.url)
    out = client.runs.wait(
        None, "resolver", input={"widget_id": "claims-filed-by-region", "dry_run": True}
    )
    assert isinstance(out, dict)
    resp = out["response"]
    assert resp["dry_run"] is True and "main.claims.claim_events" in resp["generated_sql"]


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ({}, "the input needs `widget_id`"),
        ({"refresh": True}, "the input needs `widget_id`"),
        ({"widget_id": "no-such-widget"}, "unknown widget 'no-such-widget'"),
        (
            {
                "widget_id": "open-issues-kpi",
                "intent": {"metric_id": "active_issues_count", "grain": "x"},
            },
            "the input's `intent` is not valid: grain",
        ),
    ],
)
def test_bad_input_is_answered_with_what_is_wrong(
    studio: Studio, given: dict[str, Any], says: str
) -> None:
    client = get_sync_client(url=studio.url)
    thread = client.threads.create()
    parts = list(client.runs.stream(thread["thread_id"], "resolver", input=given))
    errors = [p.data for p in parts if p.event == "error"]
    assert errors, parts
    assert says in errors[0]["message"], errors


def test_the_server_stops_cleanly(studio: Studio) -> None:
    """Last: it stops the server. (That the graph loads fast is not timed here: the
    server's "Slow graph load" warning is a wall-clock threshold that a loaded machine
    trips; tests/unit/test_studio_graph.py checks that the factory opens nothing.)"""
    assert studio.stop() == 0, studio.log()[-4000:]
    log = studio.log()
    assert "BlockingError" not in log and "shutdown failed" not in log, log[-4000:]
    assert not list(studio.tmp.iterdir()), "left behind: " + str(list(studio.tmp.iterdir()))
