"""Which notifications the registry's listener applies one widget at a time."""

from __future__ import annotations

from adapters.registry.listener import MAX_SINGLE_READS, changed_widgets


def test_widget_notifications_name_the_widgets_to_reread() -> None:
    assert changed_widgets(["widgets:a", "widgets:b", "widgets:a"]) == frozenset({"a", "b"})


def test_anything_else_or_a_large_burst_reloads_in_full() -> None:
    assert changed_widgets(["widgets:a", "metrics_catalog:nba_taken_pct"]) is None
    assert changed_widgets(["widgets:"]) is None and changed_widgets(["garbage"]) is None
    burst = [f"widgets:w{i}" for i in range(MAX_SINGLE_READS + 1)]
    assert changed_widgets(burst) is None
    assert changed_widgets(burst[:-1]) == frozenset(p[8:] for p in burst[:-1])
