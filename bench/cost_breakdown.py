"""Which statements a phase of `bench/bench_cost.py` cost, and why: each data statement the
warehouse fake received, labelled by its query tags (widget or rollup partition, why it ran,
which instance) and the row filter in its SQL (which identity's answer it was)."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

_REGIONS = re.compile(r"region\W*\s+(?:IN\s*\(([^)]*)\)|=\s*('[^']*'))", re.IGNORECASE)


def row_filter(sql: str) -> str:
    """The region values the statement's SQL restricts to (its identity's row filter and any
    widget filter), or `-` for none."""
    found = [m.group(1) or m.group(2) for m in _REGIONS.finditer(sql)]
    return " & ".join(sorted({re.sub(r"[\s']", "", f) for f in found})) or "-"


def label(stmt: dict[str, Any], instances: dict[str, str]) -> tuple[str, str, str, str]:
    """(what, why, where, filter) of one statement."""
    tags = stmt["tags"]
    pid = tags.get("instance", "").rpartition(":")[2]
    where = instances.get(pid, tags.get("instance", "?"))
    if "rollup" in tags:
        return f"rollup {tags['rollup']} {tags.get('partition', '')[:10]}", "build", where, "-"
    what = tags.get("widget") or ("data start" if "first_ts" in stmt["sql"] else "untagged")
    return what, tags.get("run", "?"), where, row_filter(stmt["sql"])


def breakdown(stmts: list[dict[str, Any]], instances: dict[str, str], table: str) -> list[str]:
    """Lines: each (what, why, instance, row filter) over `table` with its count."""
    counted = Counter(label(s, instances) for s in stmts if table in s["sql"])
    return [
        f"  {n:>3} x {what:<34} {why:<10} {where:<5} {flt}"
        for (what, why, where, flt), n in sorted(counted.items())
    ]
