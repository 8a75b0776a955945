"""The demo lakehouse: three tables with the same three-part names as on Databricks.

Everything is generated inside DuckDB with hash-based pseudo-random numbers
(`hash(row, salt)`), so the same `now` always gives byte-identical tables and a build
takes a fraction of a second. Timestamps are placed relative to `now` (UTC) so that
"last 30 days" always has data.

Three-part names: DuckDB cannot attach a catalog called `main` (it is a reserved name),
but DuckDB >= 2.0 has nested schemas. The tables live in the schemas `claims` and `ops`
nested under the default schema `main` of the connection's default catalog, so
`SELECT count(*) FROM main.claims.claim_events` resolves unchanged, with no rewriting.

Column types: `TABLES` lists the Databricks types (what the LLM prompt and schema
checks see). In DuckDB a Databricks `TIMESTAMP` (which is TIMESTAMP_LTZ, an instant) is
a `TIMESTAMPTZ` and a `STRING` is a `VARCHAR`; the session TimeZone is UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb

from domain.ports import TableSchema

CLAIM_EVENTS = "main.claims.claim_events"
DEVICES = "main.claims.devices"
ALERTS = "main.ops.alerts"

# three-part name -> [(column, Databricks type)]
TABLES: dict[str, list[tuple[str, str]]] = {
    CLAIM_EVENTS: [
        ("event_id", "BIGINT"),
        ("claim_id", "STRING"),
        ("device_id", "STRING"),
        ("event_type", "STRING"),
        ("event_ts", "TIMESTAMP"),
        ("region", "STRING"),
        ("channel", "STRING"),
        ("amount", "DECIMAL(12,2)"),
        ("attributes", "STRING"),
    ],
    DEVICES: [
        ("device_id", "STRING"),
        ("manufacturer", "STRING"),
        ("model", "STRING"),
        ("category", "STRING"),
        ("purchase_date", "DATE"),
        ("retail_price", "DECIMAL(10,2)"),
        ("enrolled_at", "TIMESTAMP"),
    ],
    ALERTS: [
        ("alert_id", "STRING"),
        ("severity", "STRING"),
        ("service", "STRING"),
        ("region", "STRING"),
        ("created_at", "TIMESTAMP"),
        ("resolved_at", "TIMESTAMP"),
        ("message", "STRING"),
    ],
}

N_CLAIMS = 16_500  # ~3.4 events per claim -> ~55,000 events
N_DEVICES = 5_000
N_ALERTS = 10_000
HISTORY_DAYS = 180

_DUCKDB_TYPES = {"STRING": "VARCHAR", "TIMESTAMP": "TIMESTAMPTZ"}


def table_schemas() -> tuple[TableSchema, ...]:
    """The demo tables as `domain.ports.TableSchema`s (for the LLM prompt and checks)."""
    return tuple(TableSchema(name=name, columns=tuple(cols)) for name, cols in TABLES.items())


def duckdb_type(databricks_type: str) -> str:
    """The DuckDB column type used for a Databricks type of the demo tables."""
    return _DUCKDB_TYPES.get(databricks_type, databricks_type)


def _create_table_sql(name: str) -> str:
    cols = ", ".join(f"{col} {duckdb_type(typ)}" for col, typ in TABLES[name])
    return f"CREATE OR REPLACE TABLE {name} ({cols})"


# `$now` is the build instant (TIMESTAMPTZ). rnd(i, salt) is a uniform [0, 1) double,
# pick(i, salt, n) a 1-based list index in [1, n], secs(x) an interval of floor(x) seconds.
_MACROS = """
CREATE OR REPLACE TEMP MACRO rnd(i, salt) AS (hash(i, salt) % 1000000)::DOUBLE / 1000000;
CREATE OR REPLACE TEMP MACRO pick(i, salt, n) AS CAST(hash(i, salt) % n AS BIGINT) + 1;
CREATE OR REPLACE TEMP MACRO secs(x) AS to_seconds(CAST(floor(x) AS BIGINT));
"""

_REGION = """CASE WHEN {r} < 0.24 THEN 'northeast' WHEN {r} < 0.46 THEN 'southeast'
    WHEN {r} < 0.64 THEN 'midwest' WHEN {r} < 0.78 THEN 'southwest' ELSE 'west' END"""

_CLAIM_EVENTS_SQL = f"""
INSERT INTO {CLAIM_EVENTS}
WITH claims AS (
    SELECT
        c,
        'CLM-' || lpad(CAST(c AS VARCHAR), 7, '0') AS claim_id,
        'DEV-' || lpad(CAST(hash(c, 'device') % {N_DEVICES} AS VARCHAR), 5, '0') AS device_id,
        $now - secs(rnd(c, 'filed') * {HISTORY_DAYS} * 86400) AS filed_ts,
        {_REGION.format(r="rnd(c, 'region')")} AS region,
        CASE WHEN rnd(c, 'channel') < 0.45 THEN 'app' WHEN rnd(c, 'channel') < 0.70 THEN 'web'
             WHEN rnd(c, 'channel') < 0.90 THEN 'phone' ELSE 'store' END AS channel,
        CAST(round(40 + pow(rnd(c, 'amount'), 2) * 1460, 2) AS DECIMAL(12, 2)) AS claimed,
        rnd(c, 'outcome') AS outcome,
        secs(3600 + rnd(c, 'decide') * 72 * 3600) AS to_decision,
        secs(3600 + rnd(c, 'pay') * 96 * 3600) AS to_payment,
        secs(1800 + rnd(c, 'close') * 48 * 3600) AS to_close,
        rnd(c, 'closes') < 0.9 AS closes,
        '{{"damage": "' || ['screen', 'battery', 'water', 'theft', 'other'][pick(c, 'damage', 5)]
            || '", "carrier": "' || ['verizon', 'att', 'tmobile', 'none'][pick(c, 'carrier', 4)]
            || '"}}' AS attributes
    FROM range({N_CLAIMS}) AS r(c)
),
events AS (
    SELECT c, 0 AS step, 'filed' AS event_type, filed_ts AS ts, claimed AS amount FROM claims
    UNION ALL
    SELECT c, 1, CASE WHEN outcome < 0.28 THEN 'denied' ELSE 'approved' END,
           filed_ts + to_decision, NULL FROM claims WHERE outcome >= 0.10
    UNION ALL
    SELECT c, 2, 'paid', filed_ts + to_decision + to_payment,
           CAST(round(claimed * (0.5 + 0.5 * rnd(c, 'payout')), 2) AS DECIMAL(12, 2))
    FROM claims WHERE outcome >= 0.28
    UNION ALL
    SELECT c, 3, 'closed',
           filed_ts + to_decision + CASE WHEN outcome >= 0.28 THEN to_payment ELSE to_seconds(0) END
               + to_close,
           NULL
    FROM claims WHERE outcome >= 0.10 AND closes
)
SELECT CAST(e.c * 4 + e.step AS BIGINT), claim_id, device_id, e.event_type, e.ts, region, channel,
       e.amount, attributes
FROM events AS e JOIN claims USING (c)
WHERE e.ts < $now
ORDER BY e.ts, 1
"""

_DEVICES_SQL = f"""
INSERT INTO {DEVICES}
WITH d AS (
    SELECT
        d,
        ['Acme', 'Globex', 'Initech', 'Umbrella', 'Stark', 'Wayne'][pick(d, 'maker', 6)] AS manufacturer,
        CASE WHEN rnd(d, 'cat') < 0.60 THEN 'phone' WHEN rnd(d, 'cat') < 0.80 THEN 'tablet'
             WHEN rnd(d, 'cat') < 0.92 THEN 'laptop' ELSE 'watch' END AS category,
        CAST($now AS DATE) - CAST(30 + floor(rnd(d, 'bought') * 1000) AS INTEGER) AS purchase_date
    FROM range({N_DEVICES}) AS r(d)
)
SELECT
    'DEV-' || lpad(CAST(d AS VARCHAR), 5, '0'),
    manufacturer,
    manufacturer || ' ' || ['X1', 'X2', 'Pro', 'Lite', 'Max'][pick(d, 'model', 5)],
    category,
    purchase_date,
    CAST(round(CASE category WHEN 'phone' THEN 399 WHEN 'tablet' THEN 299
                             WHEN 'laptop' THEN 699 ELSE 199 END
               + rnd(d, 'price') * 900, 2) AS DECIMAL(10, 2)),
    least(CAST(purchase_date AS TIMESTAMPTZ) + secs(rnd(d, 'enroll') * 30 * 86400),
          $now - to_seconds(60))
FROM d
ORDER BY 1
"""

_ALERTS_SQL = f"""
INSERT INTO {ALERTS}
WITH a AS (
    SELECT
        a,
        CASE WHEN rnd(a, 'sev') < 0.08 THEN 'critical' WHEN rnd(a, 'sev') < 0.28 THEN 'high'
             WHEN rnd(a, 'sev') < 0.65 THEN 'medium' ELSE 'low' END AS severity,
        ['billing', 'claims-api', 'auth', 'payments', 'notifications', 'search'][pick(a, 'svc', 6)]
            AS service,
        {_REGION.format(r="rnd(a, 'region')")} AS region,
        $now - secs(pow(rnd(a, 'created'), 2) * {HISTORY_DAYS} * 86400) AS created_at
    FROM range({N_ALERTS}) AS r(a)
),
r AS (
    SELECT *,
        created_at + secs((CASE severity WHEN 'critical' THEN 30 WHEN 'high' THEN 90
                                         WHEN 'medium' THEN 240 ELSE 720 END)
                          * (0.2 + 1.6 * rnd(a, 'ttr')) * 60) AS resolves_at
    FROM a
)
SELECT
    'ALR-' || lpad(CAST(a AS VARCHAR), 6, '0'),
    severity,
    service,
    region,
    created_at,
    CASE WHEN rnd(a, 'open') < 0.07 OR resolves_at >= $now THEN NULL ELSE resolves_at END,
    severity || ' alert on ' || service || ': '
        || ['latency above SLO', 'error rate spike', 'queue backlog', 'disk usage high',
            'certificate expiring'][pick(a, 'msg', 5)]
FROM r
ORDER BY created_at, 1
"""


def build_lakehouse(con: duckdb.DuckDBPyConnection, *, now: datetime) -> None:
    """(Re)create the demo tables on `con` deterministically for `now` (made UTC).

    Sets the connection's TimeZone to UTC. Replaces the tables if they exist.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    now = now.astimezone(UTC)
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE SCHEMA IF NOT EXISTS main.claims")
    con.execute("CREATE SCHEMA IF NOT EXISTS main.ops")
    con.execute(_MACROS)
    for name, insert in (
        (CLAIM_EVENTS, _CLAIM_EVENTS_SQL),
        (DEVICES, _DEVICES_SQL),
        (ALERTS, _ALERTS_SQL),
    ):
        con.execute(_create_table_sql(name))
        con.execute(insert, {"now": now})


def new_claim_events(
    n: int, *, now: datetime, region: str = "west", first_id: int = 10_000_000
) -> list[dict[str, object]]:
    """`n` new `filed` claim events at `now` (rows to append to CLAIM_EVENTS in tests, the
    benchmark and the demo: each is a new claim, so `claims_filed_count` moves by `n`)."""
    from decimal import Decimal

    return [
        {
            "event_id": first_id + i,
            "claim_id": f"CLM-NEW-{first_id + i}",
            "device_id": "DEV-000001",
            "event_type": "filed",
            "event_ts": now,
            "region": region,
            "channel": "app",
            "amount": Decimal("100.00"),
            "attributes": "{}",
        }
        for i in range(n)
    ]
