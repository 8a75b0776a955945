"""Rollups in PostgreSQL (domain.ports.RollupStore): built by the warehouse, read by all.

- Each rollup's rows live in a typed table `rollup_<name>` (created from its first
  partition's columns; text in the "C" collation, so ORDER BY and comparisons are the
  warehouse's byte order), one row per (dimensions, bucket) of each partition.
- `build_partitions(rollup, partitions)` runs one warehouse statement per partition and
  replaces that partition's rows in one PostgreSQL transaction, recording in
  `rollup_partitions` when it was built and from which data version. Each partition is
  built under a fleet-wide lease (Redis when REDIS_URL is set), so N instances asking at
  once build it once: the others wait for the leader and then find it built.
- `answer(query)` reads, in one REPEATABLE READ snapshot, whether every partition the
  range needs is built (with the current definition) and, if so, the rows. None when it is
  not: the resolution takes today's path.
- `maintain(now)` (every ROLLUP_CHECK_INTERVAL_S): find where the data starts (once), build
  missing partitions, rebuild unversioned update-window partitions past max_age_seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from adapters.pg_errors import postgres_failure
from adapters.postgres import _type_name
from adapters.rollup_tables import Built, built, prepare, read, stored_start, write_partition
from domain.failures import ResolverFailure, WarehouseFailure
from domain.jsonsafe import json_safe, portable_type
from domain.lease import Lead, Leases, Outcome
from domain.ports import Warehouse
from domain.results import Column
from domain.rollups import Rollup, RollupAnswer, RollupQuery
from metricsql.rollups import build_sql, data_start_sql, partitions_between, update_window
from metricsql.rollups.timegrid import following, partition_of

log = logging.getLogger(__name__)


@dataclass
class BuildReport:
    """What one `build_partitions` call did, per partition start (ISO 8601)."""

    built: list[str] = field(default_factory=list)  # by this call: one statement each
    skipped: list[str] = field(default_factory=list)  # already built as asked
    shared: list[str] = field(default_factory=list)  # built meanwhile by another instance
    failed: dict[str, str] = field(default_factory=dict)  # failure kind: detail


def _at_least(have: str | None, wanted: str) -> bool:
    """Whether a partition built from version `have` is current for `wanted`: the same, or
    (Delta's integer versions) a later one: rows are read when built, never older than the
    version they are labelled with, so a lagging instance never rebuilds a newer build."""
    if have is None:
        return False
    if have.isdigit() and wanted.isdigit():
        return int(have) >= int(wanted)
    return have == wanted


class PgRollups:
    """`domain.ports.RollupStore` on the resolver's PostgreSQL pool and the warehouse."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        rollups: dict[str, Rollup],
        *,
        warehouse: Warehouse | None,
        leases: Leases | None = None,
        lease_wait_s: float = 60.0,
        max_rows: int = 200_000,
        statement_timeout_ms: int = 3000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._pool = pool
        self.rollups = rollups
        self._warehouse = warehouse
        self._leases = leases
        self._lease_wait_s = lease_wait_s
        self._max_rows = max_rows
        self._timeout_ms = int(statement_timeout_ms)
        self._clock = clock
        self._by_metric: dict[str, tuple[Rollup, ...]] = {}
        self._answering: set[str] = set()  # rollups whose last read here answered
        # (rollup, signature, partition start) -> the newest data version this process saw
        # it built from
        self._seen: dict[tuple[str, str, datetime], str] = {}
        for r in rollups.values():
            for m in r.definition.metrics:
                self._by_metric[m] = (*self._by_metric.get(m, ()), r)

    def for_metric(self, metric: str) -> tuple[Rollup, ...]:
        return self._by_metric.get(metric, ())

    def answering(self, rollup: str) -> bool:
        return rollup in self._answering

    # ------------------------------------------------------------------ read

    async def answer(self, query: RollupQuery, *, now: float) -> RollupAnswer | None:
        rollup = self.rollups[query.rollup]
        try:
            async with self._pool.connection() as conn:
                coverage, raw, description = await read(
                    conn, rollup, query, timeout_ms=self._timeout_ms
                )
        except psycopg.errors.UndefinedTable:
            self._answering.discard(rollup.name)
            return None  # no partition built yet
        except psycopg.Error as exc:
            self._answering.discard(rollup.name)
            raise postgres_failure(exc, statement_timeout_ms=self._timeout_ms) from exc
        built = self._covering(rollup, query, now, coverage)
        if built is None:
            self._answering.discard(rollup.name)
            return None  # not covered: its rows are dropped
        self._answering.add(rollup.name)
        columns = [Column(d.name, portable_type(_type_name(d.type_code))) for d in description]
        return RollupAnswer(
            rows=[{k: json_safe(v) for k, v in r.items()} for r in raw],
            columns=columns,
            sql=query.sql,
            rollup=rollup.name,
            built_at=built[0],
            partitions=built[1],
        )

    def _covering(
        self, rollup: Rollup, query: RollupQuery, now: float, rows: list[Any]
    ) -> tuple[float, int] | None:
        """(built_at, partitions) when every partition of the range is built, else None."""
        if not rows or rows[0][0] != rollup.signature:
            return None
        known = bool(rows[0][2])
        data_start: datetime | None = rows[0][1] if known else None
        lo = query.start
        if lo is None:
            if not known:  # where `all` starts is not known yet
                return None
            lo = data_start or query.end
        elif data_start is not None and lo < data_start:
            lo = data_start  # the partitions before the data's first are empty
        needed = partitions_between(rollup, lo, query.end) if lo < query.end else []
        built = {row[3]: row[4] for row in rows if row[3] is not None}
        found = {p: built[p] for p in needed if p in built}
        if not needed or len(found) != len(needed):
            return None
        window = set(update_window(rollup, datetime.fromtimestamp(now, UTC)))
        changing = [t for s, t in found.items() if s in window] or list(found.values())
        return min(changing).timestamp(), len(found)

    # ------------------------------------------------------------------ build

    async def build_partitions(
        self,
        rollup: str,
        partitions: Sequence[datetime],
        *,
        data_version: str | None = None,
        stale_before: datetime | None = None,
    ) -> BuildReport:
        """Build the partitions starting at (or holding) each of `partitions`, one
        warehouse statement each, unless already built as asked: from `data_version` when
        one is given (the table's version moved: w3's change-driven refresh), else at or
        after `stale_before` (None: built at all; a partition built from a known version
        does not age). Never raises for a failed build."""
        r = self.rollups[rollup]
        report = BuildReport()
        await self._prepare(r)
        for start in sorted({partition_of(r, p)[0] for p in partitions}):
            await self._build_one(r, start, data_version, stale_before, report)
        return report

    def _current(
        self, have: Built | None, data_version: str | None, stale_before: datetime | None
    ) -> bool:
        if have is None:
            return False
        if data_version is not None:
            return _at_least(have.data_version, data_version)
        # a partition built from a known version is rebuilt when the version moves, not
        # when it ages (nothing over a table is re-run while its version holds)
        return (
            stale_before is None or have.built_at >= stale_before or have.data_version is not None
        )

    def _known(self, r: Rollup, start: datetime, data_version: str | None) -> bool:
        """Whether this process saw the partition built from `data_version` or a later one
        (no PostgreSQL round trip: a rollup read catches up on every resolution)."""
        if data_version is None:
            return False
        return _at_least(self._seen.get((r.name, r.signature, start)), data_version)

    def _remember(self, r: Rollup, start: datetime, have: Built | None) -> None:
        if have is not None and have.data_version is not None:
            key = (r.name, r.signature, start)
            if not _at_least(self._seen.get(key), have.data_version):
                self._seen[key] = have.data_version

    async def _build_one(
        self,
        r: Rollup,
        start: datetime,
        data_version: str | None,
        stale_before: datetime | None,
        report: BuildReport,
    ) -> None:
        label = start.isoformat()
        if self._known(r, start, data_version):
            return report.skipped.append(label)
        have = await self._built(r, start)
        if self._current(have, data_version, stale_before):
            self._remember(r, start, have)
            return report.skipped.append(label)
        key = f"rollup:{r.name}:{r.signature}:{label}"
        for _ in range(3):  # a leader we followed may have built an older version
            async with self._lead(key) as lead:
                if lead is not None and not lead.leads:
                    followed = lead.followed
                    assert followed is not None
                    if not followed.ok:
                        report.failed[label] = f"{followed.kind}: {followed.detail}"
                        return
                    have = await self._built(r, start)
                    if self._current(have, data_version, stale_before):
                        self._remember(r, start, have)
                        return report.shared.append(label)
                    continue  # not as asked: lead (or follow) once more
                outcome = Outcome(ok=True)
                try:
                    have = await self._built(r, start)
                    if self._current(have, data_version, stale_before):
                        self._remember(r, start, have)
                        report.shared.append(label)  # built by another instance meanwhile
                    else:
                        await self._run_build(r, start, data_version)
                        self._remember(r, start, Built(datetime.now(UTC), data_version))
                        report.built.append(label)
                except ResolverFailure as exc:
                    outcome = Outcome(ok=False, kind=exc.kind.value, detail=exc.detail)
                    report.failed[label] = f"{exc.kind.value}: {exc.detail}"
                    log.warning("rollup %s partition %s: %s", r.name, label, exc.detail)
                if lead is not None:
                    lead.settle(outcome)
                return
        report.failed[label] = "conflict: built from other versions while this build waited"

    @contextlib.asynccontextmanager
    async def _lead(self, key: str) -> AsyncIterator[Lead | None]:
        """The key's fleet-wide leadership scope (domain/lease.py); None without leases."""
        if self._leases is None:
            yield None
            return
        async with self._leases.lead(key, wait_s=self._lease_wait_s) as lead:
            yield lead

    async def _run_build(self, r: Rollup, start: datetime, data_version: str | None) -> None:
        if self._warehouse is None:
            raise WarehouseFailure("no warehouse is configured")
        end = following(start, r.definition.partition_by)
        t0 = time.perf_counter()
        result = await self._warehouse.execute(
            build_sql(r, start, end),
            max_rows=self._max_rows,
            tags={"app": "widget-data-resolver", "rollup": r.name, "partition": start.isoformat()},
        )
        if result.truncated:
            raise WarehouseFailure(
                f"partition {start.isoformat()} has more than {self._max_rows} rollup rows"
            )
        build_ms = (time.perf_counter() - t0) * 1000
        await write_partition(
            self._pool, r, start, end, result, data_version=data_version, build_ms=build_ms
        )
        log.info("rollup %s: built %s (%d rows)", r.name, start.isoformat(), len(result.rows))

    async def _built(self, r: Rollup, start: datetime) -> Built | None:
        return await built(self._pool, r, start)

    async def _prepare(self, r: Rollup) -> None:
        await prepare(self._pool, r)

    async def catch_up(self, rollup: str, *, data_version: str, now: float) -> bool:
        r = self.rollups[rollup]
        window = update_window(r, datetime.fromtimestamp(now, UTC))
        starts = {partition_of(r, p)[0] for p in window}
        if all(self._known(r, s, data_version) for s in starts):
            return True  # seen built from this version (or a later one): no round trip
        try:
            report = await self.build_partitions(rollup, window, data_version=data_version)
        except psycopg.Error as exc:  # the store itself: a PostgresFailure, as for a read
            raise postgres_failure(exc, what="rollup catch-up") from exc
        return not report.failed

    # ------------------------------------------------------------------ maintenance

    async def data_start(self, r: Rollup) -> tuple[bool, datetime | None]:
        """(known, first time value) of the rollup's table; measured once, fleet-wide, for
        every rollup over the same table and time column (one statement for them all)."""
        await self._prepare(r)
        known, first = await self._stored_start(r)
        if known:
            return True, first
        if self._warehouse is None:
            return False, None
        d = r.definition
        siblings = [
            x
            for x in self.rollups.values()
            if (x.definition.table, x.definition.time_column) == (d.table, d.time_column)
        ]
        key = f"rollup-start:{d.table}:{d.time_column}"
        async with self._lead(key) as lead:
            if lead is not None and not lead.leads:
                return await self._stored_start(r)
            for x in siblings:  # measured for another rollup over the table already?
                await self._prepare(x)
                known, first = await self._stored_start(x)
                if known:
                    break
            if not known:
                result = await self._warehouse.execute(data_start_sql(r), max_rows=1)
                value = result.rows[0]["first_ts"] if result.rows else None
                first = datetime.fromisoformat(value) if isinstance(value, str) else None
            async with self._pool.connection() as conn:
                for x in siblings:
                    await conn.execute(
                        "UPDATE rollups SET data_start = %s, data_start_known = true,"
                        " updated_at = now() WHERE name = %s AND signature = %s",
                        (first, x.name, x.signature),
                    )
            if lead is not None:
                lead.settle(Outcome(ok=True))
            return True, first

    async def _stored_start(self, r: Rollup) -> tuple[bool, datetime | None]:
        return await stored_start(self._pool, r)

    async def maintain(
        self, now: datetime | None = None, *, rebuild_aged: bool = True
    ) -> dict[str, BuildReport]:
        """Build what is missing and (`rebuild_aged`) rebuild the update window's partitions
        older than max_age_seconds, for every rollup: the clock's bound, for a table whose
        data version is not followed. Failures are reported, never raised."""
        now = now or datetime.fromtimestamp(self._clock(), UTC)
        out: dict[str, BuildReport] = {}
        for r in self.rollups.values():
            try:
                known, first = await self.data_start(r)
                if not known:
                    continue
                everything = partitions_between(r, first or now, now)
                report = await self.build_partitions(r.name, everything)
                if rebuild_aged:
                    age = r.definition.max_age_seconds
                    stale = datetime.fromtimestamp(now.timestamp() - age, UTC)
                    again = await self.build_partitions(
                        r.name, update_window(r, now), stale_before=stale
                    )
                    report.built += again.built
                    report.shared += again.shared
                    report.failed |= again.failed
                out[r.name] = report
            except (ResolverFailure, psycopg.Error) as exc:
                log.warning("rollup %s: maintenance failed: %s", r.name, exc)
        return out

    async def run(self, interval_s: float, rebuild_aged: bool = True) -> None:
        """`maintain` now and every `interval_s` until cancelled."""
        while True:
            try:
                await self.maintain(rebuild_aged=rebuild_aged)
            except Exception:  # a bug must not end maintenance for good: logged, retried
                log.exception("rollup maintenance failed")
            await asyncio.sleep(interval_s)
