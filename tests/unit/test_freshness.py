"""The freshness policy and the cache entry format (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from domain.freshness import (
    Age,
    Policy,
    age_of,
    entry_policy,
    expires_at,
    failure_note,
    make_entry,
    may_retry,
    usable_as_last_good,
)
from domain.models import RoutingEntry
from tests.support.servers import CONFIG_DIR

ROUTING = Path(CONFIG_DIR) / "metric_routing.yaml"


def test_policy_defaults_swr_is_the_ttl_and_sie_one_hour() -> None:
    r = RoutingEntry(backend="postgres", ttl_seconds=60)
    p = Policy.of(r)
    assert (p.ttl_s, p.swr_s, p.sie_s) == (60, 60, 3600)
    assert p.retention_s == 60 + 3600
    r = RoutingEntry(
        backend="postgres",
        ttl_seconds=60,
        stale_while_revalidate_seconds=10,
        stale_if_error_seconds=0,
    )
    assert Policy.of(r) == Policy(60, 10, 0) and Policy.of(r).retention_s == 70


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"stale_if_error_seconds": -1}, "stale_if_error_seconds"),
        ({"stale_while_revalidate_seconds": 86_401}, "stale_while_revalidate_seconds"),
        ({"stale_if_error_seconds": "soon"}, "stale_if_error_seconds"),
        ({"ttl_seconds": 0, "stale_while_revalidate_seconds": 5}, "needs ttl_seconds > 0"),
        ({"stale_while_revalid": 5}, "stale_while_revalid"),  # a typo names itself
    ],
)
def test_bad_policies_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RoutingEntry.model_validate({"backend": "postgres", "ttl_seconds": 60} | fields)


def test_bad_policy_in_the_routing_file_names_the_metric(tmp_path: Path) -> None:
    from adapters.registry import load_routing

    bad = tmp_path / "metric_routing.yaml"
    bad.write_text(
        "metrics:\n  nba_taken_pct: {backend: postgres, ttl_seconds: 0,"
        " stale_while_revalidate_seconds: 30}\n"
    )
    with pytest.raises(ValueError, match=r"nba_taken_pct.*needs ttl_seconds > 0"):
        load_routing(bad)
    routing = load_routing(ROUTING)  # the shipped file is valid and uses the fields
    assert any(r.stale_if_error_seconds == 0 for r in routing.values())


def _entry(resolved_at: float, policy: Policy) -> dict[str, object]:
    return make_entry(
        rows=[{"v": 1}],
        schema=[{"name": "v", "type": "integer"}],
        generated_sql=None,
        truncated=False,
        resolved_at=resolved_at,
        policy=policy,
    )


def test_one_entry_serves_fresh_stale_and_last_good() -> None:
    policy = Policy(ttl_s=10, swr_s=10, sie_s=60)
    e = _entry(1000.0, policy)
    assert expires_at(e, policy) == 1010.0
    assert age_of(e, 1005, policy) is Age.fresh
    assert age_of(e, 1010, policy) is Age.stale
    assert age_of(e, 1019.9, policy) is Age.stale
    assert age_of(e, 1020, policy) is Age.last_good
    assert age_of(e, 1069.9, policy) is Age.last_good
    assert age_of(e, 1070, policy) is Age.expired
    assert usable_as_last_good(e, 1069.9, policy) and not usable_as_last_good(e, 1070, policy)
    assert not usable_as_last_good(None, 1000, policy)


def test_the_entry_keeps_the_windows_it_was_written_with() -> None:
    written = Policy(ttl_s=10, swr_s=0, sie_s=0)
    e = _entry(1000.0, written)
    now_policy = Policy(ttl_s=600, swr_s=600, sie_s=3600)
    assert entry_policy(e, now_policy) == written
    assert age_of(e, 1011, now_policy) is Age.expired
    legacy = {"rows": [], "schema": [], "resolved_at": 1000.0}  # format 1: no windows
    assert entry_policy(legacy, now_policy) == now_policy


def test_sie_zero_serves_no_last_good_once_expired() -> None:
    policy = Policy(ttl_s=10, swr_s=5, sie_s=0)
    e = _entry(1000.0, policy)
    assert usable_as_last_good(e, 1009, policy)  # still fresh
    assert not usable_as_last_good(e, 1010, policy)
    assert age_of(e, 1012, policy) is Age.stale  # swr still answers while revalidating


def test_failure_note_backoff() -> None:
    note = failure_note(kind="databricks_unavailable", detail="503", now=100.0, backoff_s=5)
    assert not may_retry(note, 104.9) and may_retry(note, 105.0) and may_retry(None, 0)
