"""Spark variable substitution and hidden metadata columns, through the whole check: every
spelling is refused (issue 18), honest look-alikes pass, and only a metric whose own
definition names `_metadata` may read it."""

from __future__ import annotations

import pytest

from domain.access import TableFilter
from domain.models import MetricDef
from nodes.safety_check import needs_hidden_columns
from sqlsafety import SafetyViolation, check_sql

CE = "main.claims.claim_events"
ALLOWED = frozenset({CE, "main.ops.alerts", "main.claims.devices"})

SUBSTITUTIONS = [
    f"SELECT '${{env:DATABRICKS_TOKEN}}' FROM {CE}",
    f"SELECT '${{spark.hadoop.fs.s3a.secret.key}}' AS k FROM {CE}",
    f'SELECT "${{system:user.home}}" FROM {CE}',
    f"SELECT region FROM {CE} WHERE channel = '${{ENV:PATH}}'",
    f"SELECT region AS `${{hiveconf:x}}` FROM {CE}",
    f"SELECT `${{x}}` FROM {CE}",
    f"SELECT region FROM {CE} -- ${{env:HOME}}",
    f"SELECT region FROM {CE} /* ${{env:HOME}} */",
    f"WITH c AS (SELECT '${{env:HOME}}' AS h FROM {CE}) SELECT h FROM c",
    f"SELECT (SELECT max('${{env:HOME}}') FROM main.claims.devices) AS h FROM {CE}",
    f"SELECT region FROM {CE} UNION ALL SELECT '${{env:HOME}}' FROM main.ops.alerts",
    # escapes Spark leaves alone before parsing but the re-render would print as `${`
    f"SELECT '$\\{{env:HOME}}' FROM {CE}",
    f"SELECT '\\u0024{{env:HOME}}' FROM {CE}",
    f"SELECT '\\$\\{{env:HOME}}' FROM {CE}",
    f"SELECT region FROM {CE} WHERE region = ${{region}}",
]


@pytest.mark.parametrize("sql", SUBSTITUTIONS)
def test_every_spark_variable_is_refused(sql: str) -> None:
    with pytest.raises(SafetyViolation) as err:
        check_sql(sql, allowed_tables=ALLOWED)
    assert err.value.rule == "variable_substitution" and "${" in err.value.reason


@pytest.mark.parametrize(
    "sql",
    [
        f"SELECT concat('$', '{{env:HOME}}') AS s FROM {CE}",
        f"SELECT '$5 {{off}}' AS s, '{{}}' AS b FROM {CE}",
        f"SELECT '$' AS d, region FROM {CE} WHERE channel = '{{x}}'",
    ],
)
def test_dollar_and_braces_apart_pass(sql: str) -> None:
    assert "${" not in check_sql(sql, allowed_tables=ALLOWED).sql


def test_a_claim_value_never_carries_a_variable_to_the_warehouse() -> None:
    evil = TableFilter(CE, "region", ("${env:DATABRICKS_TOKEN}",))
    with pytest.raises(SafetyViolation) as err:
        check_sql(f"SELECT region FROM {CE}", allowed_tables=ALLOWED, row_filters=(evil,))
    assert err.value.rule == "variable_substitution"


HIDDEN = [
    f"SELECT _metadata FROM {CE}",
    f"SELECT _metadata.file_path FROM {CE}",
    f"SELECT e._metadata.file_name FROM {CE} AS e",
    f"SELECT {CE}._metadata.file_path FROM {CE}",
    f"SELECT `_metadata`.`file_path` FROM {CE}",
    f"SELECT _METADATA.FILE_PATH FROM {CE}",
    f"SELECT _Metadata['file_path'] FROM {CE}",
    f"SELECT get(_metadata, 0) FROM {CE}",
    f"SELECT to_json(_metadata) FROM {CE}",
    f"SELECT region FROM {CE} WHERE _metadata.file_size > 0",
    f"SELECT region FROM {CE} GROUP BY region, _metadata.file_modification_time",
    f"SELECT region FROM {CE} ORDER BY _metadata.file_path",
    f"WITH m AS (SELECT _metadata AS md FROM {CE}) SELECT md.file_path FROM m",
    "SELECT * FROM (SELECT _metadata.file_path AS p FROM main.claims.devices) AS s",
    f"SELECT region FROM {CE} WHERE EXISTS (SELECT 1 FROM main.ops.alerts a WHERE a._metadata.file_path IS NOT NULL)",
]


@pytest.mark.parametrize("sql", HIDDEN)
def test_every_hidden_metadata_reference_is_refused(sql: str) -> None:
    with pytest.raises(SafetyViolation) as err:
        check_sql(sql, allowed_tables=ALLOWED)
    assert err.value.rule == "hidden_column"


@pytest.mark.parametrize("sql", HIDDEN[:4])
def test_a_metric_that_names_them_may_read_hidden_columns(sql: str) -> None:
    assert check_sql(sql, allowed_tables=ALLOWED, hidden_columns=True).sql


def metric(**definition: object) -> MetricDef:
    return MetricDef.model_validate(
        {
            "name": "m",
            "description": "d",
            "unit": "u",
            "owner": "o",
            "definition": {"table": CE, "measure": "count(*)", "time_column": "event_ts"}
            | definition,
        }
    )


def test_only_a_definition_naming_metadata_needs_hidden_columns() -> None:
    assert needs_hidden_columns(metric(measure="count(DISTINCT _metadata.file_path)"))
    assert needs_hidden_columns(metric(dimensions=["_Metadata.file_name"]))
    assert not needs_hidden_columns(metric())
    assert not needs_hidden_columns(metric(dimensions=["my_metadata", "_metadata_x"]))
    assert not needs_hidden_columns(None)
