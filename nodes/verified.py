"""Verified answers in sql_generate: a question (as written) an owner verified for the
caller's tenant is answered from that answer without asking the model (way and trust
`verified`, with who verified it and when). An intent is compiled again at each run (time
bounds move); SQL runs as checked SQL; both then pass safety_check with the caller's row
filters, as any other answer.

Before it is served, a verified answer is checked against the catalog as it is now
(`reverification_problem`): an intent must still validate and compile (its metric, its
dimensions and filter columns), SQL must still pass the safety layer with the warehouse
catalog's columns. One that does not is flagged `needs_reverification` (never silently
run): the question then takes the usual way (grounded, else model-written)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from domain.ports import VerifiedAnswer
from graph.context import Context
from graph.state import Generation, Verification
from nodes._grounding import compile_grounded, grounding_catalog
from sqlsafety import SafetyViolation, check_sql


def catalog_schema(ctx: Context) -> dict[str, dict[str, str]]:
    """The allowlisted tables' columns as the warehouse catalog has them now."""
    allowed = {t.lower() for t in ctx.safety.allowed_tables}
    return {
        t.name: dict(t.columns)
        for t in ctx.table_schemas.current()
        if t.name.lower() in allowed and t.columns
    }


def checked_verified_sql(ctx: Context, sql: str, cap: int | None) -> str:
    """SQL an owner verifies, checked by the safety layer (no row filters: each caller's are
    applied at each run) against the warehouse catalog's columns, under the widget's limit
    (`cap`); the checked rendering. Raises SafetyViolation. (The owner's text is what is
    kept: it is checked again, under the asking widget's limit, at each run.)"""
    checked = check_sql(
        sql,
        dialect=ctx.safety.dialect,
        allowed_tables=ctx.safety.allowed_tables,
        max_rows=min(cap or ctx.safety.max_rows, ctx.safety.max_rows),
        schema=catalog_schema(ctx) or None,
    )
    return checked.sql


def verified_sql(
    ctx: Context, answer: VerifiedAnswer, now: datetime, cap: int | None
) -> tuple[str, None] | tuple[None, str]:
    """(the SQL to run now, None), or (None, why the answer needs re-verification)."""
    if answer.intent is not None:
        compiled = compile_grounded(ctx, answer.intent, grounding_catalog(ctx), now, cap)
        if isinstance(compiled, str):
            return None, f"its intent no longer fits the catalog: {compiled}"
        return compiled[1], None
    try:
        return checked_verified_sql(ctx, answer.sql or "", cap), None
    except SafetyViolation as exc:
        return None, f"its SQL no longer passes the safety layer: {exc.rule}: {exc.reason}"


def reverification_problem(ctx: Context, answer: VerifiedAnswer, cap: int | None) -> str | None:
    """Why a verified answer needs re-verification now (its flag, or the catalog), or None."""
    if answer.needs_reverification:
        return answer.reverification_reason or "flagged for re-verification"
    now = datetime.fromtimestamp(int(ctx.clock()), UTC)
    return verified_sql(ctx, answer, now, cap)[1]


async def recheck_verified(ctx: Context) -> int:
    """Check every unflagged verified answer against the catalog as it is now (at boot and
    after each full registry reload: a catalog change) and flag the broken ones; how many
    were flagged. Each is checked under the limit of the widget it was verified through."""
    if ctx.verified_answers is None:
        return 0
    flagged = 0
    for answer in await ctx.verified_answers.unflagged():
        widget = ctx.registry.widget(answer.widget_id, answer.tenant)
        cap = widget.data_intent.limit if widget is not None else None
        problem = reverification_problem(ctx, answer, cap)
        if problem is not None:
            await ctx.verified_answers.flag(answer.tenant, answer.question, problem)
            flagged += 1
    return flagged


async def watch_verified(ctx: Context) -> Callable[[object], Awaitable[None]]:
    """Check the verified answers now (at boot); the hook that checks them again after
    each full registry reload (`RegistryHolder.subscribe`)."""
    await recheck_verified(ctx)

    async def on_reload(_snapshot: object) -> None:
        await recheck_verified(ctx)

    return on_reload


def verification_of(answer: VerifiedAnswer) -> Verification:
    return {
        "verified_by": answer.verified_by,
        "verified_at": datetime.fromtimestamp(answer.verified_at, UTC).isoformat(),
    }


async def answer_verified(
    ctx: Context, record: Generation, now: datetime, cap: int | None
) -> dict[str, Any] | None:
    """sql_generate's update when the question has a verified answer that still fits the
    catalog; else None (and a broken one is flagged for re-verification)."""
    if ctx.verified_answers is None:
        return None
    answer = await ctx.verified_answers.get(record["tenant"], record["question"])
    if answer is None or answer.needs_reverification:
        return None
    sql, problem = verified_sql(ctx, answer, now, cap)
    if sql is None:
        await ctx.verified_answers.flag(answer.tenant, answer.question, problem or "")
        return None
    generation: Generation = {
        **record,
        "model_id": None,
        "generated_sql": sql,
        "reused": False,  # logged: each verified answer served is in the generation log
        "way": "verified",
        "grounding": f"verified by {answer.verified_by}",
    }
    if answer.intent is not None:
        generation["intent"] = answer.intent
    return {
        "candidate_sql": sql,
        "generation": generation,
        "trust": "verified",
        "verification": verification_of(answer),
        "outcome": "verified",
    }
