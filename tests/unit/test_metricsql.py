"""The metric -> Databricks SQL compiler: shape, escaping, validation, limits, determinism."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from sqlglot import exp

from adapters.duckdb_warehouse import DuckDBWarehouse
from domain.config import load_config
from domain.failures import FailureKind, InvalidIntent
from domain.models import AbsoluteRange, DataIntent, Filter, MetricDef, WidgetSpec
from metricsql import compile_intent
from sqlsafety import check_sql, default_allowlist

CONFIG = Path(__file__).resolve().parents[2] / "config"
NOW = datetime(2026, 11, 26, 17, 45, 24, 654321, tzinfo=UTC)
HOSTILE = [
    "x' OR '1'='1",
    "'; DROP TABLE main.claims.claim_events; --",
    "a\\' OR 1=1 --",
    "back\\slash\\",
    'double " quote',
    "new\nline",
]


def _metrics() -> dict[str, MetricDef]:
    return load_config(CONFIG).metrics


def _widgets() -> dict[str, WidgetSpec]:
    return load_config(CONFIG).widgets


METRICS = _metrics()


def _intent(metric_id: str, **kw: Any) -> DataIntent:
    return DataIntent(metric_id=metric_id, **kw)


def _compile(metric_id: str, **kw: Any) -> str:
    return compile_intent(METRICS[metric_id], _intent(metric_id, **kw), now=NOW)


def _parse(sql: str) -> exp.Select:
    tree = sqlglot.parse_one(sql, read="databricks")
    assert isinstance(tree, exp.Select)
    return tree


def _where_conjuncts(tree: exp.Select) -> list[exp.Expr]:
    where = tree.args["where"].this
    return list(where.flatten()) if isinstance(where, exp.And) else [where]


# ------------------------------------------------------------------ golden strings


def test_dimensional_widget_golden() -> None:
    sql = _compile("claims_filed_count", dimensions=["region"], time_range="last_30d")
    assert sql == (
        "SELECT region, COUNT(DISTINCT claim_id) AS value FROM main.claims.claim_events "
        "WHERE event_ts >= CAST('2026-10-27 17:45:24.654321' AS TIMESTAMP) "
        "AND event_ts < CAST('2026-11-26 17:45:24.654321' AS TIMESTAMP) "
        "AND event_type = 'filed' "
        "GROUP BY region ORDER BY value DESC, region ASC LIMIT 1000"
    )


def test_time_series_golden() -> None:
    sql = _compile("claims_paid_amount", time_range="last_90d", grain="week")
    assert sql == (
        "SELECT bucket, value FROM ("
        "SELECT DATE_TRUNC('WEEK', event_ts) AS bucket, SUM(amount) AS value "
        "FROM main.claims.claim_events "
        "WHERE event_ts >= CAST('2026-08-28 17:45:24.654321' AS TIMESTAMP) "
        "AND event_ts < CAST('2026-11-26 17:45:24.654321' AS TIMESTAMP) "
        "AND event_type = 'paid' "
        "GROUP BY DATE_TRUNC('WEEK', event_ts) ORDER BY bucket DESC LIMIT 1000"
        ") AS series ORDER BY bucket ASC LIMIT 1000"
    )


def test_time_series_with_dimensions_golden() -> None:
    sql = _compile("alerts_raised_count", dimensions=["severity", "region"], grain="hour", limit=50)
    assert sql == (
        "SELECT severity, region, bucket, value FROM ("
        "SELECT severity, region, DATE_TRUNC('HOUR', created_at) AS bucket, COUNT(*) AS value "
        "FROM main.ops.alerts "
        "WHERE created_at >= CAST('2026-10-27 17:45:24.654321' AS TIMESTAMP) "
        "AND created_at < CAST('2026-11-26 17:45:24.654321' AS TIMESTAMP) "
        "GROUP BY severity, region, DATE_TRUNC('HOUR', created_at) "
        "ORDER BY bucket DESC, severity DESC, region DESC LIMIT 50"
        ") AS series ORDER BY bucket ASC, severity ASC, region ASC LIMIT 50"
    )


def test_kpi_all_time_golden() -> None:
    """No dimensions, no grain: one aggregate row, no ORDER BY; `all` has no start bound."""
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    intent = _intent("devices_enrolled_count", time_range="all")
    sql = compile_intent(METRICS["devices_enrolled_count"], intent, now=now)
    assert sql == (
        "SELECT COUNT(*) AS value FROM main.claims.devices "
        "WHERE enrolled_at < CAST('2026-01-02 03:04:05' AS TIMESTAMP) LIMIT 1000"
    )


def test_filters_all_ops_golden() -> None:
    sql = _compile(
        "alerts_raised_count",
        dimensions=["service"],
        time_range="last_1h",
        filters=[
            {"column": "severity", "op": "in", "value": ["critical", "high"]},
            {"column": "region", "op": "not_in", "value": ["west"]},
            {"column": "service", "op": "!=", "value": "auth"},
            {"column": "region", "op": ">", "value": "a"},
            {"column": "region", "op": ">=", "value": 1},
            {"column": "region", "op": "<", "value": 2.5},
            {"column": "region", "op": "<=", "value": True},
        ],
    )
    assert sql == (
        "SELECT service, COUNT(*) AS value FROM main.ops.alerts "
        "WHERE created_at >= CAST('2026-11-26 16:45:24.654321' AS TIMESTAMP) "
        "AND created_at < CAST('2026-11-26 17:45:24.654321' AS TIMESTAMP) "
        "AND severity IN ('critical', 'high') AND NOT region IN ('west') AND service <> 'auth' "
        "AND region > 'a' AND region >= 1 AND region < 2.5 AND region <= TRUE "
        "GROUP BY service ORDER BY value DESC, service ASC LIMIT 1000"
    )


# ------------------------------------------------------------------ structure


@pytest.mark.parametrize(
    ("grain", "unit"),
    [("minute", "MINUTE"), ("hour", "HOUR"), ("day", "DAY"), ("week", "WEEK"), ("month", "MONTH")],
)
def test_grain_buckets_group_and_order(grain: str, unit: str) -> None:
    """Inner: grouped by bucket, newest first, limited; outer: the same rows oldest first."""
    sql = _compile("alerts_raised_count", dimensions=["severity", "region"], grain=grain)
    outer = _parse(sql)
    names = ["severity", "region", "bucket", "value"]
    assert [s.alias_or_name for s in outer.selects] == names
    assert all(isinstance(s, exp.Column) for s in outer.selects)
    assert outer.args["from_"].this.alias == "series"
    tree = outer.args["from_"].this.this
    assert isinstance(tree, exp.Select)
    assert [s.alias_or_name for s in tree.selects] == names
    bucket = tree.selects[2].this
    assert isinstance(bucket, exp.TimestampTrunc)
    assert bucket.unit is not None and bucket.unit.name == unit
    assert bucket.this.name == "created_at"
    group = [g.sql("databricks") for g in tree.args["group"].expressions]
    assert group == ["severity", "region", f"DATE_TRUNC('{unit}', created_at)"]
    inner_order = [(o.this.name, bool(o.args.get("desc"))) for o in tree.args["order"].expressions]
    assert inner_order == [("bucket", True), ("severity", True), ("region", True)]
    order = [(o.this.name, bool(o.args.get("desc"))) for o in outer.args["order"].expressions]
    assert order == [("bucket", False), ("severity", False), ("region", False)]
    limits = [q.args["limit"].expression.to_py() for q in (tree, outer)]
    assert limits == [1000, 1000]


def test_measure_expression_is_parsed_from_the_definition() -> None:
    tree = _parse(_compile("alert_mttr_minutes", dimensions=["severity"]))
    value = tree.selects[-1]
    assert value.alias == "value"
    assert isinstance(value.this, exp.Avg)
    diff = value.this.this
    assert isinstance(diff, exp.TimestampDiff)
    assert diff.unit is not None and diff.unit.name == "MINUTE"


def test_only_date_trunc_cast_and_measure_functions_are_used() -> None:
    """The safety layer sees no function the compiler invented beyond these."""
    for metric in METRICS.values():
        if not metric.definition.measure:
            continue
        dims = metric.definition.dimensions[:2]
        tree = _parse(
            compile_intent(metric, _intent(metric.name, dimensions=dims, grain="day"), now=NOW)
        )
        measure_funcs = {
            type(f)
            for f in sqlglot.parse_one(metric.definition.measure, read="databricks").find_all(
                exp.Func
            )
        }
        used = {type(f) for f in tree.find_all(exp.Func) if not isinstance(f, exp.Connector)}
        assert used <= {exp.TimestampTrunc, exp.Cast} | measure_funcs, metric.name


def test_time_range_bounds_are_utc() -> None:
    cet = timezone(timedelta(hours=2))
    rng = AbsoluteRange(
        start=datetime(2026, 3, 1, 2, 0, tzinfo=cet), end=datetime(2026, 3, 2, tzinfo=cet)
    )
    tree = _parse(_compile("claims_filed_count", time_range=rng))
    first, second = _where_conjuncts(tree)[:2]
    assert isinstance(first, exp.GTE) and isinstance(second, exp.LT)
    assert first.expression.sql("databricks") == "CAST('2026-03-01 00:00:00' AS TIMESTAMP)"
    assert second.expression.sql("databricks") == "CAST('2026-03-01 22:00:00' AS TIMESTAMP)"


def test_default_filters_come_before_intent_filters() -> None:
    tree = _parse(
        _compile("claims_filed_count", filters=[{"column": "region", "op": "=", "value": "west"}])
    )
    conj = [c.sql("databricks") for c in _where_conjuncts(tree)[2:]]
    assert conj == ["event_type = 'filed'", "region = 'west'"]


# ------------------------------------------------------------------ escaping


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_filter_values_stay_single_literals(value: str) -> None:
    sql = _compile(
        "claims_filed_count",
        filters=[
            {"column": "region", "op": "=", "value": value},
            {"column": "channel", "op": "in", "value": [value, "web"]},
        ],
    )
    tree = _parse(sql)  # one statement, parses cleanly
    assert len(sqlglot.parse(sql, read="databricks")) == 1
    conj = _where_conjuncts(tree)
    assert len(conj) == 5  # two time bounds, default filter, two intent filters
    eq, membership = conj[3], conj[4]
    assert isinstance(eq, exp.EQ) and eq.expression.is_string and eq.expression.name == value
    assert isinstance(membership, exp.In)
    assert [v.name for v in membership.expressions] == [value, "web"]
    assert not list(tree.find_all(exp.Or))
    assert not list(tree.find_all(exp.Drop))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), [1.0, float("-inf")]])
def test_non_finite_numbers_are_rejected(value: float | list[float]) -> None:
    """DataIntent refuses them; the compiler refuses them too when validation was skipped."""
    with pytest.raises(ValueError, match="finite"):
        _intent("claims_filed_count", filters=[{"column": "region", "op": "in", "value": value}])
    unchecked = DataIntent.model_construct(
        metric_id="claims_filed_count",
        filters=[Filter.model_construct(column="region", op="in", value=value)],
        dimensions=[],
        grain="none",
        time_range="last_30d",
        limit=None,
    )
    with pytest.raises(InvalidIntent, match="finite"):
        compile_intent(METRICS["claims_filed_count"], unchecked, now=NOW)


# ------------------------------------------------------------------ validation


def test_disallowed_dimension_is_invalid_intent() -> None:
    with pytest.raises(InvalidIntent) as info:
        _compile("claims_filed_count", dimensions=["device_id"])
    assert info.value.kind is FailureKind.invalid_intent
    assert "device_id" in info.value.detail


def test_disallowed_filter_column_is_invalid_intent() -> None:
    with pytest.raises(InvalidIntent, match="event_type"):
        _compile(
            "claims_filed_count", filters=[{"column": "event_type", "op": "=", "value": "paid"}]
        )


def test_filter_on_filter_only_column_is_allowed() -> None:
    sql = _compile("alert_mttr_minutes", filters=[{"column": "region", "op": "=", "value": "west"}])
    assert "region = 'west'" in sql


def test_postgres_metric_is_invalid_intent() -> None:
    with pytest.raises(InvalidIntent, match="measure"):
        _compile("active_issues_count")


def test_intent_for_another_metric_is_invalid() -> None:
    with pytest.raises(InvalidIntent):
        compile_intent(METRICS["claims_paid_amount"], _intent("claims_filed_count"), now=NOW)


# ------------------------------------------------------------------ limits and determinism


@pytest.mark.parametrize(
    ("limit", "default_limit", "max_rows", "expected"),
    [
        (None, 1000, 10_000, 1000),
        (5, 1000, 10_000, 5),
        (5000, 1000, 100, 100),
        (None, 500, 200, 200),
    ],
)
def test_limit_is_capped(
    limit: int | None, default_limit: int, max_rows: int, expected: int
) -> None:
    intent = _intent("claims_filed_count", dimensions=["region"], limit=limit)
    sql = compile_intent(
        METRICS["claims_filed_count"],
        intent,
        now=NOW,
        max_rows=max_rows,
        default_limit=default_limit,
    )
    assert _parse(sql).args["limit"].expression.to_py() == expected


def test_same_inputs_same_text() -> None:
    for wid, widget in _widgets().items():
        metric = METRICS[widget.data_intent.metric_id]
        if not metric.definition.measure:
            continue
        first = compile_intent(metric, widget.data_intent, now=NOW)
        again = compile_intent(metric, DataIntent(**widget.data_intent.model_dump()), now=NOW)
        assert first == again, wid
    later = _compile("claims_filed_count")
    assert later != compile_intent(
        METRICS["claims_filed_count"], _intent("claims_filed_count"), now=NOW + timedelta(seconds=1)
    )


# ------------------------------------------------------------------ newest buckets, run


@pytest.fixture(scope="module")
def warehouse() -> Iterator[DuckDBWarehouse]:
    wh = DuckDBWarehouse(now=NOW)
    yield wh
    wh.close()


async def _series(wh: DuckDBWarehouse, metric_id: str, **kw: Any) -> list[dict[str, Any]]:
    sql = compile_intent(METRICS[metric_id], _intent(metric_id, **kw), now=NOW, max_rows=10_000)
    checked = check_sql(
        sql, dialect="databricks", allowed_tables=default_allowlist("databricks"), max_rows=10_000
    )
    assert checked.sql == sql  # passes the safety layer as compiled (its LIMIT is kept)
    result = await wh.execute(sql, max_rows=10_000)
    assert not result.truncated
    return result.rows


@pytest.mark.parametrize(
    ("metric_id", "kw"),
    [
        ("claims_filed_count", {"grain": "minute", "time_range": "last_9999d"}),
        (
            "alerts_raised_count",
            {"dimensions": ["severity", "region"], "grain": "hour", "time_range": "last_30d"},
        ),
    ],
)
async def test_limited_time_series_keeps_the_newest_buckets_in_ascending_order(
    warehouse: DuckDBWarehouse, metric_id: str, kw: dict[str, Any]
) -> None:
    """Before: ORDER BY bucket ASC LIMIT n returned the n OLDEST rows."""
    full = await _series(warehouse, metric_id, limit=10_000, **kw)
    limited = await _series(warehouse, metric_id, limit=1000, **kw)
    assert len(full) > 2000  # the limit really cuts
    assert limited == full[-1000:]
    dims = kw.get("dimensions", [])
    keys = [(r["bucket"], *(r[d] for d in dims)) for r in limited]
    assert keys == sorted(keys)
    assert limited[-1]["bucket"] == max(r["bucket"] for r in full)
    assert limited[0]["bucket"] > min(r["bucket"] for r in full)
