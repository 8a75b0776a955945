"""Resolver.resolve (service/resolution.py) takes a run as far as its deciding read in the
caller's task: a cache answer is finished there (no detached task, nothing to share); a run
that needs the backend goes on as a shared flight from that read, never routing or reading
again; identical callers meanwhile share it."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any

from domain.access import UNRESTRICTED
from service.resolution import Resolver
from tests.nodes.test_runner import WIDGET, CountingCache, CountingLeases, _key_and_policy, _seed
from tests.support.clocks import until
from tests.support.doubles import StubGateway, make_ctx


class TaskCount:
    """Tasks created on the running loop while the block runs."""

    def __enter__(self) -> TaskCount:
        self.loop = asyncio.get_running_loop()
        self.before = self.loop.get_task_factory()
        self.created: list[str] = []

        def factory(
            loop: asyncio.AbstractEventLoop,
            coro: Generator[Any, None, Any] | Coroutine[Any, Any, Any],
            **kw: Any,
        ) -> asyncio.Task[Any]:
            self.created.append(getattr(coro, "__qualname__", repr(coro)))
            return asyncio.Task(coro, loop=loop, **kw)

        self.loop.set_task_factory(factory)  # type: ignore[arg-type]
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.set_task_factory(self.before)


def _resolver(**kw: Any) -> tuple[Resolver, Any, CountingCache]:
    ctx = make_ctx(**kw)
    cache = CountingCache(ctx.cache)
    ctx = make_ctx(cache=cache, **kw)
    return Resolver(ctx, refresh_ahead=False), ctx, cache


async def test_a_cache_answer_is_finished_in_the_callers_task() -> None:
    gateway = StubGateway()
    resolver, ctx, cache = _resolver(leases=CountingLeases(), postgres=gateway)
    await _seed(ctx, 5)
    spec = ctx.registry.widget(WIDGET)
    with TaskCount() as tasks:
        out = await resolver.resolve(WIDGET, spec, refresh=False, dry_run=False)
    assert out["response"]["cache_hit"] is True and out["response"]["data"] == [{"value": 41}]
    assert [t["node"] for t in out["trace"]] == ["route", "cache_lookup", "degrade_or_return"]
    assert "freshness" in out
    assert tasks.created == [] and resolver.flights.inflight == {}
    key, _ = _key_and_policy(ctx)
    assert cache.reads.count(key) == 1 and gateway.calls == []


async def test_a_miss_goes_on_as_a_flight_from_its_read_and_identical_callers_share_it() -> None:
    gateway = StubGateway()
    leases = CountingLeases()
    resolver, ctx, cache = _resolver(leases=leases, postgres=gateway)
    spec = ctx.registry.widget(WIDGET)
    key, _ = _key_and_policy(ctx)
    with TaskCount() as tasks:
        first, second = await asyncio.gather(
            resolver.resolve(WIDGET, spec, refresh=False, dry_run=False, access=UNRESTRICTED),
            resolver.resolve(WIDGET, spec, refresh=False, dry_run=False, access=UNRESTRICTED),
        )
    flights = [name for name in tasks.created if name.startswith("Flights._run")]
    assert len(flights) == 1  # one shared run
    assert len(gateway.calls) == 1 and leases.asked == [key]
    assert first["response"] == second["response"]
    steps = [t["node"] for t in first["trace"]]
    assert steps == ["route", "cache_lookup", "postgres_query", "degrade_or_return"]  # route once
    # the first caller's read decided and was handed on (the in-process cache answers
    # without suspending, so the second caller found its flight and joined it); the leader
    # read once more after taking the lease
    assert cache.reads.count(key) == 2


async def test_a_caller_that_goes_away_leaves_the_shared_run_going() -> None:
    gate = asyncio.Event()

    class Held(StubGateway):
        async def run_metric(self, *a: Any, **kw: Any) -> Any:
            await gate.wait()
            return await super().run_metric(*a, **kw)

    gateway = Held()
    resolver, ctx, _ = _resolver(leases=CountingLeases(), postgres=gateway)
    spec = ctx.registry.widget(WIDGET)
    caller = asyncio.ensure_future(resolver.resolve(WIDGET, spec, refresh=False, dry_run=False))
    await until(lambda: bool(resolver.flights.inflight))
    caller.cancel()
    gate.set()
    (flight,) = resolver.flights.inflight.values()
    out = await flight.result()
    assert out["response"]["source"] == "postgres" and len(gateway.calls) == 1
    assert (await ctx.cache.get(_key_and_policy(ctx)[0])) is not None  # cached for the next
