"""Rollups, pure: boot validation of declarations, every matching decision (and every case
that must NOT use a rollup), row filters on the rollup's read, and the SQL written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.lakehouse import TABLES
from domain.access import UNRESTRICTED, RowAccess, TableFilter
from domain.config import ConfigError, load_config, load_rollups
from domain.models import DataIntent, Filter, MetricDef
from domain.rollups import Rollup, RollupDef, RollupQuery
from metricsql import dialect
from metricsql.rollups import (
    NoMatch,
    RollupProblem,
    aggregate_of,
    build_sql,
    compile_rollup,
    match,
    partitions_between,
    update_window,
    validate_rollups,
)

NOW = datetime(2026, 3, 15, 10, 30, tzinfo=UTC)
CONFIG = load_config()
COLUMNS = {t: [c for c, _ in cols] for t, cols in TABLES.items()}
TYPES = {c: t for c, t in TABLES["main.claims.claim_events"]}
ROLLUPS, PROBLEMS = validate_rollups(
    CONFIG.rollups, metrics=CONFIG.metrics, routing=CONFIG.routing, table_columns=COLUMNS
)
CLAIMS = ROLLUPS["claim_events_daily"]
DISTINCT = ROLLUPS["claim_events_claims_daily"]  # claim_id is a dimension
EVENTS = "main.claims.claim_events"


def region(*values: str) -> RowAccess:
    return RowAccess(tables=(TableFilter(EVENTS, "region", values),))


def intent(metric: str = "claims_paid_amount", **kw: Any) -> DataIntent:
    kw.setdefault("time_range", "last_90d")
    return DataIntent(metric_id=metric, **kw)


def run(i: DataIntent, access: RowAccess = UNRESTRICTED, rollup: Rollup = CLAIMS) -> Any:
    return match(rollup, CONFIG.metrics[i.metric_id], i, access, now=NOW, column_types=TYPES)


def used(i: DataIntent, access: RowAccess = UNRESTRICTED) -> RollupQuery:
    out = run(i, access)
    assert isinstance(out, RollupQuery), out
    return out


def declined(i: DataIntent, access: RowAccess = UNRESTRICTED, rollup: Rollup = CLAIMS) -> str:
    out = run(i, access, rollup)
    assert isinstance(out, NoMatch), out
    return out.reason


# ------------------------------------------------------------------ the demo config


def test_the_demo_rollups_are_valid_and_cover_the_demo_warehouse_widgets() -> None:
    assert PROBLEMS == []
    served = {m for r in ROLLUPS.values() for m in r.definition.metrics}
    for wid, spec in CONFIG.widgets.items():
        metric = spec.data_intent.metric_id
        if CONFIG.routing[metric].backend != "databricks" or spec.data_intent.question:
            continue
        assert metric in served, wid
        rollup = next(r for r in ROLLUPS.values() if metric in r.definition.metrics)
        out = run(spec.data_intent, rollup=rollup)
        if wid == "claims-filed-by-region":  # count-distinct over 30 days: not from sums
            assert isinstance(out, NoMatch)
            out = run(spec.data_intent, rollup=DISTINCT)  # from the claims' own rows
        assert isinstance(out, RollupQuery), (wid, out)


# ------------------------------------------------------------------ validation at boot


def _validate(**changes: Any) -> list[str]:
    raw = CLAIMS.definition.model_dump() | changes
    _, problems = validate_rollups(
        {"r": RollupDef.model_validate(raw)},
        metrics=CONFIG.metrics,
        routing=CONFIG.routing,
        table_columns=COLUMNS,
    )
    return problems


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"table": "main.claims.nope"}, "unknown warehouse table"),
        ({"dimensions": ["region", "nope", "event_type"]}, "no column 'nope'"),
        ({"time_column": "nope"}, "no column 'nope'"),
        ({"measures": {"s": "sum(nope)", "n": "count(*)"}}, "no column 'nope'"),
        ({"metrics": ["no_such_metric"]}, "unknown metric"),
        ({"metrics": ["alerts_raised_count"]}, "reads main.ops.alerts"),
        ({"metrics": ["claims_insights"]}, "not a compiled warehouse metric"),
        ({"measures": {"e": "count(*)"}}, "no measure sum(amount)"),
        ({"dimensions": ["region", "channel"]}, "filters on 'event_type'"),
        ({"measures": {"a": "avg(amount)"}}, "avg is derived"),
        ({"measures": {"a": "sum(amount) + 1"}}, "is not count, sum"),
        ({"measures": {"a": "sum(amount)", "b": "SUM(amount)"}}, "same aggregate"),
        ({"grain": "week", "partition_by": "month"}, "does not nest"),
    ],
)
def test_a_bad_declaration_is_refused_at_boot(changes: dict[str, Any], needle: str) -> None:
    problems = _validate(**changes)
    assert problems and needle in "; ".join(problems), problems


def test_columns_are_checked_by_name_only_when_the_warehouse_could_not_describe() -> None:
    _, problems = validate_rollups(
        CONFIG.rollups,
        metrics=CONFIG.metrics,
        routing=CONFIG.routing,
        table_columns={t: None for t in TABLES},
    )
    assert problems == []


def test_the_rollups_file_is_read_strictly(tmp_path: Any) -> None:
    assert load_rollups(tmp_path / "absent.yaml") == {}
    bad = tmp_path / "rollups.yaml"
    bad.write_text("rollups:\n  r:\n    table: a.b.c\n    time_column: t\n    measures: {}\n")
    with pytest.raises(ConfigError, match="rollup 'r'"):
        load_rollups(bad)
    bad.write_text("rollups:\n  Bad-Name: {}\n")
    with pytest.raises(ConfigError, match="rollup name"):
        load_rollups(bad)
    bad.write_text(
        "rollups:\n  r: {table: a.b.c, time_column: t, measures: {n: count(*)}, "
        "metrics: [m], colour: red}\n"
    )
    with pytest.raises(ConfigError, match="colour"):
        load_rollups(bad)


@pytest.mark.parametrize(
    ("sql", "kind", "arg"),
    [
        ("count(*)", "count", None),
        ("COUNT(amount)", "count", "amount"),
        ("count(DISTINCT claim_id)", "count_distinct", "claim_id"),
        ("sum(amount)", "sum", "amount"),
        ("min(amount)", "min", "amount"),
        ("max(amount)", "max", "amount"),
        ("avg(amount)", "avg", "amount"),
    ],
)
def test_aggregates(sql: str, kind: str, arg: str | None) -> None:
    assert aggregate_of(sql) == (kind, arg)


@pytest.mark.parametrize("sql", ["sum(a) + 1", "a", "sum(DISTINCT a)", "percentile(a, 0.5)", "1;"])
def test_what_is_not_a_reaggregable_aggregate(sql: str) -> None:
    with pytest.raises(RollupProblem):
        aggregate_of(sql)


def test_a_measure_is_parsed_once_per_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """A read matches on every request: its metric's measure is parsed once, not each time."""
    parsed: list[str] = []
    parse = dialect.parse

    def counted(sql: str) -> Any:
        parsed.append(sql)
        return parse(sql)

    monkeypatch.setattr(dialect, "parse", counted)
    aggregate_of.cache_clear()
    queries = [used(intent("avg_claim_amount")) for _ in range(3)]
    assert parsed == [CONFIG.metrics["avg_claim_amount"].definition.measure]
    assert len({q.sql for q in queries}) == 1


def test_the_signature_follows_the_meaning() -> None:
    base = CLAIMS.definition
    same = compile_rollup("claim_events_daily", base.model_copy(update={"update_window": 3}))
    other = compile_rollup("claim_events_daily", base.model_copy(update={"grain": "hour"}))
    assert same.signature == CLAIMS.signature != other.signature


# ------------------------------------------------------------------ decisions: use it


def test_dimensions_a_subset_and_the_same_grain() -> None:
    q = used(intent(dimensions=["channel"], grain="day"))
    assert "GROUP BY channel, bucket" in q.sql and "SUM(amount_sum) AS value" in q.sql


@pytest.mark.parametrize("grain", ["week", "month"])
def test_a_coarser_grain_re_buckets(grain: str) -> None:
    assert f"DATE_TRUNC('{grain.upper()}', bucket)" in used(intent(grain=grain)).sql


@pytest.mark.parametrize(
    ("metric", "value"),
    [
        ("claims_paid_amount", "SUM(amount_sum)"),
        (
            "avg_claim_amount",
            "CAST(SUM(amount_sum) AS DOUBLE PRECISION) / NULLIF(SUM(amount_n), 0)",
        ),
    ],
)
def test_measures_re_aggregate(metric: str, value: str) -> None:
    assert f"{value} AS value" in used(intent(metric)).sql


def test_count_min_max_re_aggregate() -> None:
    r = compile_rollup(
        "mm",
        CLAIMS.definition.model_copy(
            update={"measures": {"n": "count(*)", "lo": "min(amount)", "hi": "max(amount)"}}
        ),
    )
    for measure, value in (
        ("count(*)", "CAST(COALESCE(SUM(n), 0) AS BIGINT)"),
        ("min(amount)", "MIN(lo)"),
        ("max(amount)", "MAX(hi)"),
    ):
        m = _metric(measure)
        out = match(r, m, intent(m.name), UNRESTRICTED, now=NOW)
        assert isinstance(out, RollupQuery) and f"{value} AS value" in out.sql


def _metric(measure: str) -> MetricDef:
    """claims_paid_amount (a metric the rollup declares) with another measure."""
    base = CONFIG.metrics["claims_paid_amount"]
    return base.model_copy(
        update={"definition": base.definition.model_copy(update={"measure": measure})}
    )


def test_filters_on_rollup_dimensions() -> None:
    q = used(intent(filters=[Filter(column="channel", op="in", value=["app", "web"])]))
    assert "channel IN ('app', 'web')" in q.sql and "event_type = 'paid'" in q.sql


def test_count_distinct_is_used_when_exact() -> None:
    # day grain, every rollup dimension grouped by or fixed to one value
    q = used(
        intent("claims_filed_count", dimensions=["channel"], grain="day"),
        region("west"),
    )
    assert "SUM(claims)" in q.sql
    used(intent("claims_filed_count", dimensions=["channel", "region"], grain="day"))


def test_whole_buckets_of_an_absolute_range() -> None:
    tr = {"start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z"}
    q = used(intent(time_range=tr))
    assert q.start == datetime(2026, 1, 1, tzinfo=UTC) and q.end == datetime(2026, 2, 1, tzinfo=UTC)


def test_a_relative_range_is_floored_to_the_grain_when_the_rollup_says_so() -> None:
    q = used(intent(time_range="last_30d"))
    assert q.start == datetime(2026, 2, 13, tzinfo=UTC) and q.end == NOW
    assert q.widened_from == NOW - timedelta(days=30)  # what was asked, for the response


@pytest.mark.parametrize("tr", ["mtd", "ytd", "today", "all"])
def test_aligned_relative_ranges_need_no_floor(tr: str) -> None:
    strict = compile_rollup("s", CLAIMS.definition.model_copy(update={"relative_ranges": "strict"}))
    m = CONFIG.metrics["claims_paid_amount"]
    q = match(strict, m, intent(time_range=tr), UNRESTRICTED, now=NOW)
    assert isinstance(q, RollupQuery) and q.widened_from is None  # exact: nothing to say


# ------------------------------------------------------------------ decisions: must NOT use it


def test_a_metric_the_rollup_does_not_declare() -> None:
    reason = declined(intent("alerts_raised_count"))
    assert "not one of the rollup's" in reason


def test_a_metric_moved_to_another_table_since_boot() -> None:
    m = CONFIG.metrics["claims_paid_amount"]
    moved = m.model_copy(
        update={"definition": m.definition.model_copy(update={"table": "main.claims.other"})}
    )
    out = match(CLAIMS, moved, intent(), UNRESTRICTED, now=NOW)
    assert isinstance(out, NoMatch) and "no longer reads" in out.reason


def test_a_question_is_not_answered_from_a_rollup() -> None:
    assert "question" in declined(intent(question="how many?"))


def test_a_dimension_the_rollup_lacks() -> None:
    r = compile_rollup(
        "r", CLAIMS.definition.model_copy(update={"dimensions": ["region", "event_type"]})
    )
    assert "dimension 'channel'" in declined(intent(dimensions=["channel"]), rollup=r)


@pytest.mark.parametrize(
    ("rollup_grain", "grain"), [("day", "hour"), ("day", "minute"), ("week", "month")]
)
def test_a_finer_or_straddling_grain(rollup_grain: str, grain: str) -> None:
    r = compile_rollup(
        "r", CLAIMS.definition.model_copy(update={"grain": rollup_grain, "partition_by": "week"})
    )
    assert "grain" in declined(intent(grain=grain), rollup=r)


def test_a_filter_on_a_column_that_is_not_a_dimension() -> None:
    m = CONFIG.metrics["claims_paid_amount"]
    m = m.model_copy(
        update={"definition": m.definition.model_copy(update={"filter_columns": ["device_id"]})}
    )
    i = intent(filters=[Filter(column="device_id", value="DEV-1")])
    out = match(CLAIMS, m, i, UNRESTRICTED, now=NOW)
    assert isinstance(out, NoMatch) and "filter column 'device_id'" in out.reason


def test_a_filter_value_of_the_wrong_type() -> None:
    assert "type" in declined(intent(filters=[Filter(column="region", op="in", value=[5])]))


def test_a_measure_the_rollup_cannot_re_aggregate() -> None:
    for measure in ("sum(attributes)", "count(DISTINCT device_id)"):
        m = _metric(measure)
        out = match(CLAIMS, m, intent(), UNRESTRICTED, now=NOW)
        assert isinstance(out, NoMatch) and "no measure" in out.reason


@pytest.mark.parametrize(
    ("kw", "access"),
    [
        ({"grain": "none"}, UNRESTRICTED),  # buckets merge
        ({"grain": "week"}, UNRESTRICTED),  # days merge into weeks
        ({"grain": "day"}, UNRESTRICTED),  # regions and channels merge
        ({"grain": "day", "dimensions": ["channel"]}, UNRESTRICTED),  # regions merge
        ({"grain": "day", "dimensions": ["channel"]}, region("west", "midwest")),  # two regions
        (
            {
                "grain": "day",
                "dimensions": ["channel"],
                "filters": [Filter(column="region", op="in", value=["west", "midwest"])],
            },
            UNRESTRICTED,
        ),
        (
            {
                "grain": "day",
                "dimensions": ["channel"],
                "filters": [Filter(column="region", op="!=", value="west")],
            },
            UNRESTRICTED,
        ),
    ],
)
def test_count_distinct_that_would_not_be_exact(kw: dict[str, Any], access: RowAccess) -> None:
    assert "count-distinct" in declined(intent("claims_filed_count", **kw), access)


@pytest.mark.parametrize(
    ("kw", "access"),
    [
        ({"grain": "day"}, UNRESTRICTED),
        ({"dimensions": ["region"], "time_range": "last_30d"}, region("west", "midwest")),
        ({"grain": "week", "dimensions": ["channel"]}, region("west", "midwest")),
        ({"grain": "month"}, UNRESTRICTED),
        (
            {"filters": [Filter(column="region", op="!=", value="west")]},
            region("west", "midwest"),
        ),
    ],
)
def test_count_distinct_of_a_rollup_dimension_is_exact_at_any_grain_and_dimensions(
    kw: dict[str, Any], access: RowAccess
) -> None:
    # the exact cases the measure column declines: the claims are counted from the
    # rollup's rows, which keep every distinct claim of every (dimensions, day)
    out = run(intent("claims_filed_count", **kw), access, rollup=DISTINCT)
    assert isinstance(out, RollupQuery), out
    assert "CAST(COUNT(DISTINCT claim_id) AS BIGINT) AS value" in out.sql
    assert "SUM(" not in out.sql and "event_type = 'filed'" in out.sql
    if access.tables:
        assert "region IN ('west', 'midwest')" in out.sql
    assert "claim_id" not in out.sql.split(" AS value")[0].replace("COUNT(DISTINCT claim_id)", "")


def test_count_distinct_of_a_dimension_no_rollup_declares_is_not_answered() -> None:
    # claim_events_daily has claim_id neither as a dimension nor as count(DISTINCT) beyond
    # its per-day measure: declined off its grain, never approximated
    assert "count-distinct" in declined(intent("claims_filed_count", grain="week"))
    no_measure = compile_rollup(
        "n", DISTINCT.definition.model_copy(update={"dimensions": ["region", "event_type"]})
    )
    assert "no measure count(DISTINCT claim_id)" in declined(
        intent("claims_filed_count", grain="week"), rollup=no_measure
    )


@pytest.mark.parametrize(
    "tr",
    [
        {"start": "2026-01-01T06:00:00Z", "end": "2026-02-01T00:00:00Z"},
        {"start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:01Z"},
    ],
)
def test_an_absolute_range_that_is_not_whole_buckets(tr: dict[str, str]) -> None:
    assert "not whole days" in declined(intent(time_range=tr))


def test_a_strict_rollup_leaves_a_mid_bucket_relative_range_to_the_warehouse() -> None:
    strict = compile_rollup("s", CLAIMS.definition.model_copy(update={"relative_ranges": "strict"}))
    assert "strict" in declined(intent(time_range="last_30d"), rollup=strict)
    assert "strict" in declined(intent(time_range="last_2h"), rollup=strict)


# ------------------------------------------------------------------ row filters


@pytest.mark.parametrize(
    ("access", "where"),
    [
        (RowAccess(), None),  # the dev principal: unrestricted
        (region(), "FALSE"),  # no claim, or an empty list: no rows
        (region("west"), "region IN ('west')"),
        (region("midwest", "west"), "region IN ('midwest', 'west')"),
        (region("o'hare"), "region IN ('o''hare')"),  # a value is a literal, never SQL
    ],
)
def test_row_filters_apply_to_the_rollups_rows(access: RowAccess, where: str | None) -> None:
    sql = used(intent(dimensions=["channel"]), access).sql
    if where is None:
        assert "region" not in sql
    else:
        assert f"AND {where}" in sql


def test_a_row_filter_on_another_table_does_not_restrict_this_one() -> None:
    other = RowAccess(tables=(TableFilter("main.ops.alerts", "region", ()),))
    assert "region" not in used(intent(), other).sql


def test_a_rollup_lacking_the_row_filter_column_is_not_used_for_a_filtered_identity() -> None:
    r = compile_rollup(
        "r", CLAIMS.definition.model_copy(update={"dimensions": ["channel", "event_type"]})
    )
    for access in (region(), region("west"), region("west", "midwest")):
        assert "row filter column 'region'" in declined(intent(), access, rollup=r)
    m = CONFIG.metrics["claims_paid_amount"]
    assert isinstance(match(r, m, intent(), UNRESTRICTED, now=NOW), RollupQuery)


# ------------------------------------------------------------------ SQL and partitions


def test_the_build_statement_is_one_partition() -> None:
    sql = build_sql(CLAIMS, datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
    assert sql == (
        "SELECT region, channel, event_type, DATE_TRUNC('DAY', event_ts) AS bucket, "
        "COUNT(*) AS events, SUM(amount) AS amount_sum, COUNT(amount) AS amount_n, "
        "COUNT(DISTINCT claim_id) AS claims FROM main.claims.claim_events "
        "WHERE event_ts >= CAST('2026-03-01 00:00:00' AS TIMESTAMP) "
        "AND event_ts < CAST('2026-04-01 00:00:00' AS TIMESTAMP) "
        "GROUP BY region, channel, event_type, DATE_TRUNC('DAY', event_ts)"
    )


def test_a_time_series_keeps_its_newest_buckets_as_the_compiler_does() -> None:
    sql = used(intent(grain="week", limit=3)).sql
    assert (
        "ORDER BY bucket DESC NULLS LAST LIMIT 3) AS series ORDER BY bucket ASC NULLS FIRST LIMIT 3"
        in sql
    )


def test_partitions_and_the_update_window() -> None:
    months = partitions_between(CLAIMS, datetime(2025, 12, 15, tzinfo=UTC), NOW)
    assert [p.month for p in months] == [12, 1, 2, 3]
    wide = compile_rollup("w", CLAIMS.definition.model_copy(update={"update_window": 3}))
    assert update_window(wide, NOW) == [
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 2, 1, tzinfo=UTC),
        datetime(2026, 3, 1, tzinfo=UTC),
    ]


@pytest.mark.parametrize(
    ("unit", "ts", "start", "after"),
    [
        (
            "minute",
            datetime(2026, 3, 15, 10, 30, 59, 5, tzinfo=UTC),
            datetime(2026, 3, 15, 10, 30, tzinfo=UTC),
            datetime(2026, 3, 15, 10, 31, tzinfo=UTC),
        ),
        (
            "hour",
            datetime(2026, 3, 15, 10, 30, tzinfo=UTC),
            datetime(2026, 3, 15, 10, tzinfo=UTC),
            datetime(2026, 3, 15, 11, tzinfo=UTC),
        ),
        (
            "day",
            datetime(2026, 3, 15, 10, 30, tzinfo=UTC),
            datetime(2026, 3, 15, tzinfo=UTC),
            datetime(2026, 3, 16, tzinfo=UTC),
        ),
        (
            "week",
            datetime(2026, 3, 15, 10, 30, tzinfo=UTC),  # a Sunday: its Monday
            datetime(2026, 3, 9, tzinfo=UTC),
            datetime(2026, 3, 16, tzinfo=UTC),
        ),
        (
            "month",
            datetime(2026, 12, 31, 23, 59, tzinfo=UTC),
            datetime(2026, 12, 1, tzinfo=UTC),
            datetime(2027, 1, 1, tzinfo=UTC),
        ),
    ],
)
def test_the_time_grid(unit: str, ts: datetime, start: datetime, after: datetime) -> None:
    from metricsql.rollups.timegrid import following, trunc

    assert trunc(ts, unit) == start and following(start, unit) == after


def test_a_read_is_one_template_per_shape_bound_per_request() -> None:
    from datetime import timedelta

    from metricsql.rollups.sql import read_sql

    i = intent(dimensions=["channel"], filters=[Filter(column="channel", op="=", value="50%")])
    a = used(i, region("west"))
    later = match(
        CLAIMS,
        CONFIG.metrics[i.metric_id],
        i,
        region("west"),
        now=NOW + timedelta(seconds=7),
        column_types=TYPES,
    )
    assert isinstance(later, RollupQuery)
    # the same text for the driver (prepared once by the server), the bounds its parameters
    assert a.template == later.template and a.end != later.end
    assert "%(start)s" in a.template and "%(end)s" in a.template
    assert "channel = '50%%'" in a.template  # a literal's % is not a placeholder
    assert a.params() == {"start": a.start, "end": a.end}
    # what the answer shows: the literal SQL of this request's bounds
    assert a.start is not None
    measure = metric_measure_of(i.metric_id)
    assert a.sql == read_sql(
        CLAIMS,
        measure,
        dimensions=["channel"],
        grain="none",
        start=a.start,
        end=a.end,
        filters=[*CONFIG.metrics[i.metric_id].definition.default_filters, *i.filters],
        row_filters=[("region", ("west",))],
        limit=1000,
    )


def metric_measure_of(metric: str) -> Any:
    from metricsql.rollups.compile import metric_measure

    return metric_measure(CLAIMS, CONFIG.metrics[metric])


def test_the_templates_time_bounds_are_written_as_sqlglot_writes_them() -> None:
    from metricsql.rollups.sql import PG, _cast_sql, _ts

    for ts in (NOW, datetime(2026, 1, 1, tzinfo=UTC), "__x__"):
        assert _cast_sql(ts) == _ts(ts).sql(dialect=PG)
