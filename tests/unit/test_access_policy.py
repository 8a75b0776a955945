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


def test_missing_file_is_an_empty_policy(tmp_path: Path) -> None:
    assert load_policy(tmp_path / "none.yaml") == AccessPolicy()


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
