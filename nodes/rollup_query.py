"""rollup_query: answer a compiled warehouse intent from a rollup in PostgreSQL, when one
can answer it exactly (metricsql.rollups.match) and the range it needs is built.

Outcomes (the trace): `rollup` (answered), `no_match` (no rollup can answer this intent,
or this identity: see the DEBUG log for why), `not_built` (the range is not built yet),
`store_failed` (PostgreSQL could not be read). All but `rollup` go on to today's path
(sql_generate): a rollup only ever saves a warehouse statement, never costs an answer.
Row filters apply to the rollup's rows as to the warehouse's (the identity's filters are
in the read's WHERE clause). When the table's data version is known (refresh when the data
changes), the update window is first caught up with it (built once across the fleet; a
no-op when current) and the answer is stamped with it, so it stays fresh while it holds."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from langgraph.runtime import Runtime

from domain.access import UNRESTRICTED
from domain.failures import ResolverFailure
from graph.context import Context
from graph.state import RollupUsed, State
from metricsql.rollups import NoMatch, match
from nodes._common import traced
from nodes._versions import stamp

log = logging.getLogger(__name__)


@traced("rollup_query")
async def rollup_query(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = runtime.context
    store = ctx.rollups
    metric, intent = state["metric"], state["spec"].data_intent
    if store is None:
        return {"outcome": "no_match"}
    access = state.get("access") or UNRESTRICTED
    now = ctx.clock()
    types = {
        c.lower(): t
        for table in ctx.table_schemas.current()
        if table.name.lower() == metric.definition.table.lower()
        for c, t in table.columns
    }
    outcome = "no_match"
    for rollup in store.for_metric(metric.name):
        query = match(
            rollup,
            metric,
            intent,
            access,
            now=datetime.fromtimestamp(now, UTC),
            column_types=types,
            max_rows=ctx.safety.max_rows,
            default_limit=ctx.default_row_limit,
        )
        if isinstance(query, NoMatch):
            log.debug("widget %s: rollup %s: %s", state.get("widget_id"), rollup.name, query.reason)
            continue
        versions = stamp(ctx, state)  # the table's version now, before the read
        version = (versions["data_versions"] or {}).get(rollup.definition.table)
        try:
            if version is not None and not await store.catch_up(
                rollup.name, data_version=str(version), now=now
            ):
                versions = {"data_versions": None}  # behind its table: lives by the TTL
            answer = await store.answer(query, now=now)
        except ResolverFailure as exc:
            log.warning("rollup %s unreadable (%s): today's path", rollup.name, exc.detail)
            return {"outcome": "store_failed"}
        if answer is None:
            outcome = "not_built"
            continue
        used: RollupUsed = {"name": answer.rollup, "built_at": answer.built_at}
        if query.widened_from is not None and query.start is not None:
            used["widened_to"] = query.start.timestamp()
        return {
            "rows": answer.rows,
            "schema": [c.as_dict() for c in answer.columns],
            "generated_sql": answer.sql,
            "executed": True,
            "truncated": answer.truncated,
            "resolved_at": ctx.clock(),
            "rollup": used,
            "outcome": "rollup",
        } | versions
    return {"outcome": outcome}
