"""Time arithmetic of rollups: truncating to a grain, which grains nest in which, and the
partitions a time range touches. All instants are UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.rollups import Rollup

ORDER = ("minute", "hour", "day", "week", "month")
_NESTS_IN: dict[str, frozenset[str]] = {
    "minute": frozenset({"minute", "hour", "day", "week", "month"}),
    "hour": frozenset({"hour", "day", "week", "month"}),
    "day": frozenset({"day", "week", "month"}),
    "week": frozenset({"week"}),  # a week can straddle two months
    "month": frozenset({"month"}),
}


def nests(fine: str, coarse: str) -> bool:
    """Whether every `fine` bucket lies inside one `coarse` bucket."""
    return coarse in _NESTS_IN.get(fine, frozenset())


def trunc(ts: datetime, unit: str) -> datetime:
    """The start of the `unit` bucket holding `ts` (weeks start on Monday, as DATE_TRUNC)."""
    ts = ts.astimezone(UTC)
    if unit == "minute":
        return ts.replace(second=0, microsecond=0)
    if unit == "hour":
        return ts.replace(minute=0, second=0, microsecond=0)
    day = ts.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "day":
        return day
    if unit == "week":
        return day - timedelta(days=day.weekday())
    if unit == "month":
        return day.replace(day=1)
    raise ValueError(f"unknown time unit {unit!r}")


def following(start: datetime, unit: str) -> datetime:
    """The start of the bucket after the one starting at `start`."""
    if unit == "month":
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    steps = {"minute": 60, "hour": 3600, "day": 86_400, "week": 7 * 86_400}
    return start + timedelta(seconds=steps[unit])


def aligned(ts: datetime, unit: str) -> bool:
    return trunc(ts, unit) == ts.astimezone(UTC)


def partition_of(rollup: Rollup, ts: datetime) -> tuple[datetime, datetime]:
    start = trunc(ts, rollup.definition.partition_by)
    return start, following(start, rollup.definition.partition_by)


def partitions_between(rollup: Rollup, lo: datetime, hi: datetime) -> list[datetime]:
    """The starts of the partitions overlapping [lo, hi), oldest first."""
    unit = rollup.definition.partition_by
    out: list[datetime] = []
    start = trunc(lo, unit)
    while start < hi:
        out.append(start)
        start = following(start, unit)
    return out


def update_window(rollup: Rollup, now: datetime) -> list[datetime]:
    """The starts of the newest `update_window` partitions, the one holding `now` last:
    the partitions new or changed rows land in."""
    unit = rollup.definition.partition_by
    starts = [trunc(now, unit)]
    for _ in range(rollup.definition.update_window - 1):
        starts.append(trunc(starts[-1] - timedelta(microseconds=1), unit))
    return sorted(starts)
