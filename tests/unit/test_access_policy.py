"""The access policy file and the canonical access a principal gets from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain.access import (
    AccessPolicy,
    PolicyError,
    TableFilter,
    load_policy,
    parse_policy,
    validate_policy,
)
from domain.identity import DEV_PRINCIPAL, Principal, claim_values, parse_scopes
from service.settings import REPO_ROOT

POLICY = load_policy(REPO_ROOT / "config" / "access_policy.yaml")


def principal(**attrs: object) -> Principal:
    return Principal.build(
        subject="u", tenant="acme", scopes=["data:read"], attributes=attrs, via="jwt"
    )


def test_demo_policy_filters_claims_alerts_and_two_series() -> None:
    assert {r.table for r in POLICY.tables} == {"main.claims.claim_events", "main.ops.alerts"}
    assert {r.metric for r in POLICY.series} == {"claims_in_progress_count", "cost_avoided_mtd"}
    assert POLICY.claims == {"regions"}


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        (["west", "midwest", "west"], ("midwest", "west")),
        ("west", ("west",)),
        ([1, "1", 1.0], ("1",)),
        ([True, "true"], ("true",)),
        ([{"a": 1}, None, ["x"]], ()),
        (None, ()),
        (1.5, ("1.5",)),
    ],
)
def test_claim_values_are_sorted_deduplicated_and_type_normalized(
    raw: object, canonical: tuple[str, ...]
) -> None:
    assert claim_values(raw) == canonical


def test_same_access_is_equal_whatever_the_claim_spelling() -> None:
    a = POLICY.access_for(principal(regions=["west", "midwest"]))
    b = POLICY.access_for(principal(regions=["midwest", "west", "west"]))
    assert a == b
    assert POLICY.access_for(principal(regions=[1])) == POLICY.access_for(principal(regions=["1"]))
    assert a != POLICY.access_for(principal(regions=["west"]))


def test_a_principal_without_the_claim_gets_empty_filters() -> None:
    access = POLICY.access_for(principal())
    assert access.tenant == "acme"
    assert all(f.values == () for f in access.tables)
    assert all(f.values == () for f in access.series)
    assert access.series_filter("cost_avoided_mtd") is not None
    assert access.series_filter("nba_taken_pct") is None


def test_dev_principal_is_unrestricted() -> None:
    access = POLICY.access_for(DEV_PRINCIPAL)
    assert access.tables == () and access.series == () and access.tenant == "default"


def test_table_filters_select_by_table() -> None:
    access = POLICY.access_for(principal(regions=["west"]))
    assert access.table_filters(["MAIN.claims.claim_events"]) == (
        TableFilter("main.claims.claim_events", "region", ("west",)),
    )
    assert access.table_filters(["main.claims.devices"]) == ()


@pytest.mark.parametrize(
    "data",
    [
        {"tables": {"claim_events": {"column": "region", "claim": "regions"}}},
        {"tables": {"main.claims.claim_events": {"column": "region"}}},
        {"tables": {"main.claims.claim_events": {"column": "region; drop", "claim": "regions"}}},
        {"series": {"x": {"column": "region", "claim": "regions"}}},
        {"tables": ["main.claims.claim_events"]},
        {"other": {}},
        "nonsense",
    ],
)
def test_malformed_policies_are_refused(data: object) -> None:
    with pytest.raises(PolicyError):
        parse_policy(data)


def test_validation_names_unknown_table_column_metric_and_dimension() -> None:
    policy = parse_policy(
        {
            "tables": {
                "main.x.y": {"column": "region", "claim": "regions"},
                "main.ops.alerts": {"column": "nope", "claim": "regions"},
            },
            "series": {
                "not_a_metric": {"dimension": "region", "claim": "regions"},
                "cost_avoided_mtd": {"dimension": "team", "claim": "regions"},
            },
        }
    )
    problems = validate_policy(
        policy,
        table_columns={"main.ops.alerts": ["region", "severity"]},
        series_dimensions={"cost_avoided_mtd": ["region"]},
    )
    text = "\n".join(problems)
    assert len(problems) == 4
    for fragment in ("main.x.y", "'nope'", "not_a_metric", "'team'"):
        assert fragment in text


GOOD = "tables:\n  main.ops.alerts: {column: region, claim: regions}\n"
# each bad policy file (None: the path does not exist; "<dir>": a directory) and what the
# refusal must name
BAD_FILES: dict[str, tuple[str | bytes | None, str]] = {
    "missing": (None, "does not exist"),
    "directory": ("<dir>", "is a directory"),
    "empty": ("", "is empty"),
    "whitespace": ("\n   \n\n", "is empty"),
    "comments_only": ("# tables:\n#   main.ops.alerts: {column: region}\n", "is empty"),
    "document_marker_only": ("---\n...\n", "is empty"),
    "null_mappings": ("tables:\nseries:\n", "no rule"),
    "empty_mappings": ("version: 1\ntables: {}\nseries: {}\n", "no rule"),
    "invalid_yaml": ("tables: {main.ops.alerts: [\n", "invalid YAML"),
    "tab_indent": ("tables:\n\tmain.ops.alerts: {column: region, claim: regions}\n", "YAML"),
    "duplicate_table": (
        GOOD + "  main.ops.alerts: {column: severity, claim: regions}\n",
        "duplicate key 'main.ops.alerts'",
    ),
    "duplicate_table_other_spelling": (
        "tables:\n  main.ops.alerts: {column: region, claim: regions}\n"
        "  'main.ops.alerts': {column: severity, claim: regions}\n",
        "duplicate key 'main.ops.alerts'",
    ),
    "duplicate_table_other_case": (
        GOOD + "  MAIN.Ops.Alerts: {column: severity, claim: regions}\n",
        "listed twice",
    ),
    "duplicate_rule_key": (
        "tables:\n  main.ops.alerts: {column: region, column: severity, claim: regions}\n",
        "duplicate key 'column'",
    ),
    "duplicate_section": (
        GOOD + "tables:\n  main.claims.claim_events: {column: region, claim: regions}\n",
        "duplicate key 'tables'",
    ),
    "not_a_mapping": ("- main.ops.alerts\n", "expected a mapping"),
    "scalar": ("row filters please\n", "expected a mapping"),
    "unknown_version": ("version: 2\n" + GOOD, "version"),
    "not_utf8": (
        b"tables:\n  main.ops.alerts: {column: r\xe9gion, claim: regions}\n",
        "cannot read",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_policy_file_is_refused_naming_the_problem(tmp_path: Path, case: str) -> None:
    """Fail closed: no bad file ever reads as "no row filters"."""
    content, named = BAD_FILES[case]
    path = tmp_path / "access_policy.yaml"
    if content == "<dir>":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    assert named in str(err.value) and str(path) in str(err.value)
    if case in ("missing", "directory", "empty", "comments_only", "empty_mappings"):
        assert "ROW_FILTERS_DISABLED=true" in str(err.value)  # says how to fix it


def test_the_fingerprint_is_of_the_rules_not_the_spelling(tmp_path: Path) -> None:
    a, b, c = (tmp_path / n for n in ("a.yaml", "b.yaml", "c.yaml"))
    a.write_text(
        "version: 1\n" + GOOD + "  main.claims.claim_events: {column: region, claim: regions}\n"
    )
    b.write_text(
        "# reordered, other quoting\ntables:\n"
        "  'main.claims.claim_events': {claim: regions, column: region}\n"
        '  "main.ops.alerts":\n    column: region\n    claim: regions\n'
    )
    c.write_text(GOOD)
    pa, pb, pc = load_policy(a), load_policy(b), load_policy(c)
    assert pa.fingerprint == pb.fingerprint != pc.fingerprint
    assert pa.fingerprint.startswith("sha256:") and len(pa.fingerprint) == 7 + 64
    assert pa.describe() == {
        "row_filters": True,
        "path": str(a),
        "fingerprint": pa.fingerprint,
        "tables": 2,
        "series": 0,
    }
    assert AccessPolicy().describe() == {"row_filters": False, "path": None, "fingerprint": None}


def test_the_demo_policy_loads() -> None:
    assert POLICY.source is not None and POLICY.source.endswith("access_policy.yaml")
    assert POLICY.describe()["row_filters"] is True


def test_scopes_from_string_or_list() -> None:
    assert parse_scopes({"scope": "data:read  widgets:read"}) == {"data:read", "widgets:read"}
    assert parse_scopes({"scopes": ["audit:read", 3]}) == {"audit:read"}
    assert parse_scopes({"scope": 5}) == frozenset()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("192.168.1.5", False),
        ("::ffff:10.0.0.1", False),
        ("localhost", False),  # a socket peer is an address, never a name
        ("", False),
        (None, False),
        ("testclient", False),
    ],
)
def test_loopback_is_decided_on_the_peer_address(host: str | None, loopback: bool) -> None:
    from service.auth import is_loopback

    assert is_loopback(host) is loopback


def test_row_filters_disabled_is_explicit_and_exclusive(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from service.settings import Settings

    assert Settings().row_filters_disabled is False
    assert Settings(row_filters_disabled=True).row_filters_disabled is True
    with pytest.raises(ValidationError, match="ROW_FILTERS_DISABLED"):
        Settings(row_filters_disabled=True, access_policy_file=tmp_path / "p.yaml")
