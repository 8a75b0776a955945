"""`resolver check-sql`: run the safety layer from the shell.

    resolver check-sql --dialect databricks [--allow-table NAME ...] [--max-rows N] < query.sql
        -> {"allowed", "rule", "reason", "sql"}; exit 0 allowed, 1 rejected, 2 usage error
    resolver check-sql --jsonl FILE [--dialect D] [--allow-table NAME ...] [--max-rows N]
        FILE lines: {"id", "sql", "dialect"?} -> one {"id", "allowed", "rule", "reason"} per line;
        exit 0 all allowed, 1 any rejected, 2 usage error (missing file, bad line)

Without --allow-table the allowlist is the metric catalog's tables for the dialect
(see `sqlsafety.catalog.default_allowlist`). A line's own "dialect" wins over --dialect.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sqlsafety.catalog import default_allowlist
from sqlsafety.errors import SafetyViolation
from sqlsafety.names import DIALECTS, compile_allowlist
from sqlsafety.policy import check_sql

EXIT_ALLOWED, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input to the command itself (not a rejected query): exit 2."""


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    rule: str | None
    reason: str | None
    sql: str | None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resolver check-sql",
        description="Check SQL with the safety layer (one query on stdin, or a JSONL file).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument(
        "--dialect", choices=DIALECTS, help="SQL dialect (required for stdin input)"
    )
    parser.add_argument(
        "--allow-table",
        action="append",
        dest="allow_tables",
        metavar="NAME",
        help="allowlisted table (repeatable); default: the metric catalog's tables for the dialect",
    )
    parser.add_argument(
        "--max-rows", type=_positive_int, default=10_000, help="row limit (default 10000)"
    )
    parser.add_argument(
        "--jsonl", type=Path, metavar="FILE", help="check every {id, sql, dialect?} line of FILE"
    )
    return parser


def _allowlist(dialect: str, explicit: list[str] | None) -> frozenset[str]:
    """The allowlist for `dialect`, validated up front (a bad name is a usage error)."""
    if explicit:
        tables = frozenset(explicit)
    else:
        try:
            tables = default_allowlist(dialect)
        except (OSError, KeyError, TypeError, AttributeError, yaml.YAMLError) as exc:
            raise UsageError(
                f"cannot read the default allowlist from the metric catalog: {exc}"
            ) from exc
    try:
        compile_allowlist(dialect, tables)
    except ValueError as exc:
        raise UsageError(f"--allow-table: {exc}") from exc
    return tables


def verdict(sql: str, dialect: str, allowed_tables: frozenset[str], max_rows: int) -> Verdict:
    try:
        checked = check_sql(sql, dialect=dialect, allowed_tables=allowed_tables, max_rows=max_rows)
    except SafetyViolation as exc:
        return Verdict(False, exc.rule, exc.reason, None)
    return Verdict(True, None, None, checked.sql)


def _read_jsonl(path: Path, default_dialect: str | None) -> list[tuple[Any, str, str]]:
    """(id, sql, dialect) per non-blank line; every line validated before any is checked."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from exc
    items: list[tuple[Any, str, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{number}: invalid JSON: {exc.msg}") from exc
        if (
            not isinstance(record, dict)
            or "id" not in record
            or not isinstance(record.get("sql"), str)
        ):
            raise UsageError(f'{path}:{number}: expected an object with "id" and a string "sql"')
        dialect = record.get("dialect") or default_dialect
        if dialect not in DIALECTS:
            raise UsageError(
                f"{path}:{number}: dialect must be one of {', '.join(DIALECTS)} (got {dialect!r})"
            )
        items.append((record["id"], record["sql"], dialect))
    return items


def _run_jsonl(args: argparse.Namespace) -> int:
    items = _read_jsonl(args.jsonl, args.dialect)
    allowlists = {d: _allowlist(d, args.allow_tables) for d in {d for _, _, d in items}}
    status = EXIT_ALLOWED
    for item_id, sql, dialect in items:
        v = verdict(sql, dialect, allowlists[dialect], args.max_rows)
        if not v.allowed:
            status = EXIT_REJECTED
        print(json.dumps({"id": item_id, "allowed": v.allowed, "rule": v.rule, "reason": v.reason}))
    return status


def _run_stdin(args: argparse.Namespace) -> int:
    if args.dialect is None:
        raise UsageError("--dialect is required when reading SQL from stdin")
    sql = sys.stdin.read()
    if not sql.strip():
        raise UsageError("no SQL on stdin")
    v = verdict(sql, args.dialect, _allowlist(args.dialect, args.allow_tables), args.max_rows)
    print(json.dumps({"allowed": v.allowed, "rule": v.rule, "reason": v.reason, "sql": v.sql}))
    return EXIT_ALLOWED if v.allowed else EXIT_REJECTED


def check_sql_main(argv: list[str]) -> int:
    """Entry point for `resolver check-sql ARGS` (argv excludes the word check-sql)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help exits 0, a usage error exits 2
        return int(exc.code or 0)
    try:
        return _run_jsonl(args) if args.jsonl is not None else _run_stdin(args)
    except UsageError as exc:
        print(f"resolver check-sql: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(check_sql_main(sys.argv[1:]))
