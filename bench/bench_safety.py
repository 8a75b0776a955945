"""Benchmark the SQL safety layer (not a test).

Runs `check_sql` over every allowed query of tests/fixtures/safety/*.jsonl many times
and prints the median and p95 microseconds per check, overall and for the typical KPI
query, and whether sqlglot's compiled (mypyc) build is active.

    .venv/bin/python bench/bench_safety.py [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import sqlglot
import sqlglot.parser
import sqlglot.tokens

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from sqlsafety import check_sql  # noqa: E402

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "safety"
ALLOW = {
    "databricks": frozenset({"main.claims.claim_events", "main.ops.alerts", "main.claims.devices"}),
    "postgres": frozenset({"kpi_metrics_history"}),
}
KPI = (
    "SELECT region, count(*) AS value FROM main.claims.claim_events "
    "WHERE event_ts >= TIMESTAMP '2026-01-01 00:00:00' GROUP BY region"
)


def allowed_cases() -> list[tuple[str, str]]:
    cases = []
    for path in sorted(FIXTURES.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                case = json.loads(line)
                if case["allowed"]:
                    cases.append((case["dialect"], case["sql"]))
    return cases


def timings(cases: list[tuple[str, str]], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        for dialect, sql in cases:
            start = time.perf_counter()
            check_sql(sql, dialect=dialect, allowed_tables=ALLOW[dialect])
            out.append((time.perf_counter() - start) * 1e6)
    return out


def report(label: str, samples: list[float]) -> None:
    samples = sorted(samples)
    p95 = samples[int(0.95 * (len(samples) - 1))]
    print(
        f"{label:<34} n={len(samples):>6}  median={statistics.median(samples):7.1f} µs  p95={p95:7.1f} µs"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    logging.disable(logging.WARNING)

    compiled = sqlglot.tokens.SQLGLOTC_INSTALLED and not sqlglot.parser.__file__.endswith(".py")
    print(f"sqlglot {sqlglot.__version__}; compiled extension (sqlglotc/mypyc) active: {compiled}")
    print(f"  parser module: {sqlglot.parser.__file__}")

    cases = allowed_cases()
    timings(cases, 2)  # warm up caches (allowlist compilation, dialect tables)
    report(f"all allowed fixtures ({len(cases)})", timings(cases, args.rounds))
    for dialect in ALLOW:
        subset = [c for c in cases if c[0] == dialect]
        report(f"  {dialect} ({len(subset)})", timings(subset, args.rounds))
    report("typical KPI query (databricks)", timings([("databricks", KPI)], args.rounds * 40))
    return 0


if __name__ == "__main__":
    sys.exit(main())
