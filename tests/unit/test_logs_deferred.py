"""Log lines written on the event loop go out at its next turn, in one write, with the
request id they were written under (observability/logs.py::DeferredStreamHandler)."""

from __future__ import annotations

import asyncio
import io
import logging

from observability.logs import DeferredStreamHandler, JsonFormatter, TextFormatter, request_id_var
from tests.support.clocks import next_turn


def _logger(handler: logging.Handler) -> logging.Logger:
    log = logging.getLogger(f"test-deferred-{id(handler)}")
    log.propagate = False
    log.handlers = [handler]
    log.setLevel(logging.INFO)
    return log


class CountingStream(io.StringIO):
    writes = 0

    def write(self, s: str) -> int:
        self.writes += 1
        return super().write(s)


async def test_lines_written_on_the_loop_go_out_at_its_next_turn_with_their_request_id() -> None:
    stream = CountingStream()
    handler = DeferredStreamHandler(stream)
    handler.setFormatter(TextFormatter("%(levelname)s %(message)s"))
    log = _logger(handler)
    token = request_id_var.set("req-a")
    log.info("first")
    request_id_var.reset(token)
    token = request_id_var.set("req-b")
    log.info("second")
    request_id_var.reset(token)
    assert stream.getvalue() == ""  # not on the request's path
    await next_turn()
    assert stream.getvalue() == "INFO first request_id=req-a\nINFO second request_id=req-b\n"
    assert stream.writes == 1  # one write for the turn's lines


async def test_flush_writes_what_is_pending() -> None:
    stream = io.StringIO()
    handler = DeferredStreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = _logger(handler)
    token = request_id_var.set("req-c")
    log.info("at shutdown")
    request_id_var.reset(token)
    handler.flush()
    assert '"request_id":"req-c"' in stream.getvalue()
    assert '"msg":"at shutdown"' in stream.getvalue()


def test_without_a_running_loop_a_line_is_written_at_once() -> None:
    stream = io.StringIO()
    handler = DeferredStreamHandler(stream)
    handler.setFormatter(TextFormatter("%(message)s"))
    _logger(handler).warning("now")
    assert stream.getvalue() == "now\n"


async def test_metrics_recorded_later_are_recorded_at_the_loops_next_turn() -> None:
    from observability import metrics as m

    seen: list[int] = []
    m.later(seen.append, 1)
    m.later(seen.append, 2)
    assert seen == []  # not on the request's way
    await next_turn()
    assert seen == [1, 2]
    m.later(seen.append, 3)
    m.render()  # a scrape records what is pending first
    assert seen == [1, 2, 3]


def test_metrics_recorded_later_without_a_loop_are_recorded_now() -> None:
    from observability import metrics as m

    seen: list[int] = []
    m.later(seen.append, 1)
    assert seen == [1]


def test_a_flush_scheduled_on_a_loop_that_closed_is_scheduled_again() -> None:
    from observability import metrics as m

    seen: list[str] = []

    async def record_and_leave(tag: str) -> None:
        m.later(seen.append, tag)

    asyncio.run(record_and_leave("a"))  # the loop closes with its turn still pending
    assert seen in ([], ["a"])

    async def next_loop() -> None:
        m.later(seen.append, "b")
        await next_turn()

    asyncio.run(next_loop())
    assert seen == ["a", "b"]
