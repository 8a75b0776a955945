"""Benchmark what identity adds to a request (not a test).

Per request the service verifies the caller (HS256 JWT, or an RS256 one with a cached
JWKS key), derives its row access from the policy and fingerprints it for the single-
flight key; a warehouse query is checked by the safety layer and, with row filters, has
every filtered table rewritten. Prints median and p95 microseconds of each.

    .venv/bin/python bench/bench_auth.py [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from adapters.identity import JwksKeys, JwtConfig, JwtVerifier, mint_token  # noqa: E402
from domain.access import load_policy  # noqa: E402
from domain.keys import access_fingerprint  # noqa: E402
from fakes.jwks_server import JwksServer  # noqa: E402
from sqlsafety import check_sql  # noqa: E402

SECRET = "bench-secret-0123456789abcdef0123456789"
ALLOWED = frozenset({"main.claims.claim_events", "main.ops.alerts", "main.claims.devices"})
KPI = (
    "SELECT region, count(*) AS value FROM main.claims.claim_events "
    "WHERE event_ts >= TIMESTAMP '2026-01-01 00:00:00' GROUP BY region"
)
JOIN = (
    "SELECT d.model, count(DISTINCT e.claim_id) AS claims FROM main.claims.claim_events e "
    "JOIN main.claims.devices d ON e.device_id = d.device_id WHERE e.event_type = 'filed' "
    "GROUP BY d.model ORDER BY claims DESC LIMIT 5"
)


def report(name: str, samples: list[float]) -> None:
    s = sorted(samples)
    p95 = s[min(len(s) - 1, round(0.95 * (len(s) - 1)))]
    print(f"{name:<48} median {statistics.median(s) * 1e6:8.1f} us   p95 {p95 * 1e6:8.1f} us")


async def timed(fn: Callable[[], Awaitable[object]], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t0)
    return out


def timed_sync(fn: Callable[[], object], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


async def main(rounds: int) -> None:
    policy = load_policy(REPO_ROOT / "config" / "access_policy.yaml")
    hs = JwtVerifier(JwtConfig(secret=SECRET))
    token = mint_token(SECRET, tenant="acme", scopes="data:read", claims={"regions": ["west"]})
    report("HS256 verify", await timed(lambda: hs.verify(token), rounds))
    with JwksServer() as idp:
        keys = JwksKeys(idp.url)
        rs = JwtVerifier(JwtConfig(issuer=idp.issuer, audience=idp.audience), keys)
        rs_token = idp.mint(alg="RS256", regions=["west"])
        await rs.verify(rs_token)  # fetch the keys once
        report("RS256 verify (cached JWKS key)", await timed(lambda: rs.verify(rs_token), rounds))
        await keys.aclose()
    principal = await hs.verify(token)
    report("row access from the policy", timed_sync(lambda: policy.access_for(principal), rounds))
    access = policy.access_for(principal)
    report(
        "access fingerprint (single-flight key)",
        timed_sync(lambda: access_fingerprint(access), rounds),
    )
    filters = access.table_filters()
    for name, sql in (("KPI", KPI), ("join", JOIN)):
        plain = timed_sync(partial(check_sql, sql, allowed_tables=ALLOWED), rounds)
        filtered = timed_sync(
            partial(check_sql, sql, allowed_tables=ALLOWED, row_filters=filters), rounds
        )
        kept = timed_sync(
            partial(
                check_sql, sql, allowed_tables=ALLOWED, row_filters=filters, keep_unfiltered=True
            ),
            rounds,
        )
        report(f"safety check, {name} query", plain)
        report(f"safety check + row filters, {name} query", filtered)
        report(f"  + unfiltered copy kept (fresh LLM SQL), {name}", kept)
        print(f"{'':<48} ratio {statistics.median(filtered) / statistics.median(plain):.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2000)
    asyncio.run(main(parser.parse_args().rounds))
