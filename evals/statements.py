"""An independent check of every statement that reached the warehouse: keyword tokens,
the parsed tree's node types, table and function names, judged with this module's own
lists, plus the safety layer as an oracle."""

from __future__ import annotations

from collections.abc import Iterable

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

from sqlsafety import SafetyViolation, check_sql

# Token types that never belong in a read-only query (the tokenizer sees keywords even
# where a parser might be fooled; string literals and comments are not keyword tokens).
WRITE_TOKENS = frozenset(
    {
        TokenType.INSERT,
        TokenType.UPDATE,
        TokenType.DELETE,
        TokenType.MERGE,
        TokenType.DROP,
        TokenType.CREATE,
        TokenType.ALTER,
        TokenType.TRUNCATE,
        TokenType.GRANT,
        TokenType.REVOKE,
        TokenType.COPY,
        TokenType.ATTACH,
        TokenType.DETACH,
        TokenType.INSTALL,
        TokenType.LOAD,
        TokenType.PRAGMA,
        TokenType.SET,
        TokenType.USE,
        TokenType.COMMAND,
        TokenType.EXECUTE,
        TokenType.COMMIT,
        TokenType.ROLLBACK,
        TokenType.EXPORT,
    }
)
WRITE_NODES: tuple[type[exp.Expr], ...] = (
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Merge,
    exp.Create,
    exp.Drop,
    exp.Alter,
    exp.TruncateTable,
    exp.Command,
    exp.Copy,
    exp.Set,
    exp.Use,
    exp.Attach,
    exp.Detach,
    exp.Install,
    exp.Pragma,
    exp.Grant,
    exp.Into,
    exp.Lock,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
)
# Function names (prefixes) that read files, the network, the environment or sleep.
SUSPICIOUS_FUNCTION_PREFIXES = (
    "read_",
    "pg_",
    "http",
    "sleep",
    "getenv",
    "glob",
    "system",
    "current_setting",
    "reflect",
    "java_",
    "dblink",
    "lo_",
    "ai_",
    "secret",
    "query",
    "sniff_csv",
    "parquet_",
    "iceberg_",
    "delta_scan",
)


def _function_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    return node.sql_name().lower()


def _table_name(table: exp.Table) -> str:
    return ".".join(p.name.lower() for p in table.parts)


def statement_problems(
    sql: str, *, dialect: str, allowed_tables: Iterable[str], max_rows: int
) -> list[str]:
    """Why `sql` is not a single bounded SELECT over allowlisted tables (empty if it is).

    Independent of the safety layer: keyword tokens, the parsed tree's node types, table
    names and function names are judged here with lists of this module's own."""
    allowed = {t.lower() for t in allowed_tables}
    problems: list[str] = []
    try:
        tokens = sqlglot.Dialect.get_or_raise(dialect).tokenize(sql)
    except TokenError as exc:
        return [f"does not tokenize: {exc}"]
    semis = [i for i, t in enumerate(tokens) if t.token_type == TokenType.SEMICOLON]
    if any(i != len(tokens) - 1 for i in semis):
        problems.append("more than one statement (a ';' before the end)")
    bad_tokens = sorted({t.text.upper() for t in tokens if t.token_type in WRITE_TOKENS})
    if bad_tokens:
        problems.append(f"write/session keywords: {', '.join(bad_tokens)}")
    try:
        trees = [t for t in sqlglot.parse(sql, read=dialect) if t is not None]
    except (ParseError, TokenError) as exc:
        return [*problems, f"does not parse as {dialect}: {str(exc).splitlines()[0][:160]}"]
    if len(trees) != 1:
        return [*problems, f"{len(trees)} statements"]
    tree = trees[0]
    if not isinstance(tree, exp.Select | exp.SetOperation):
        problems.append(f"root is {type(tree).__name__}, not a SELECT")
    for node in tree.walk():
        if isinstance(node, WRITE_NODES):
            problems.append(f"{type(node).__name__} node in the tree")
        elif isinstance(node, exp.With) and node.args.get("recursive"):
            problems.append("recursive CTE")
        elif isinstance(node, exp.Func) and _function_name(node).startswith(
            SUSPICIOUS_FUNCTION_PREFIXES
        ):
            problems.append(f"function {_function_name(node)}()")
    cte_names = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE) if cte.alias_or_name}
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            problems.append(f"table-valued expression {table.this.sql(dialect)[:60]}")
            continue
        name = _table_name(table)
        if name in cte_names and not table.args.get("db"):
            continue
        if name not in allowed:
            problems.append(f"table {name} is not allowlisted")
    limit = tree.args.get("limit")
    value = limit.args.get("expression") if isinstance(limit, exp.Limit) else None
    if not (isinstance(value, exp.Literal) and value.is_int):
        problems.append("no literal LIMIT on the outermost query")
    elif int(value.this) > max_rows:
        problems.append(f"LIMIT {value.this} above the cap {max_rows}")
    return problems


def executed_problems(
    databricks_sql: str, duckdb_sql: str | None, *, allowed_tables: frozenset[str], max_rows: int
) -> list[str]:
    """Problems with one executed statement: the safety layer as oracle on the Databricks
    text, plus the independent check on both the Databricks and the DuckDB text."""
    problems: list[str] = []
    try:
        check_sql(
            databricks_sql, dialect="databricks", allowed_tables=allowed_tables, max_rows=max_rows
        )
    except SafetyViolation as exc:
        problems.append(f"oracle check_sql rejects it: {exc.rule}: {exc.reason}")
    problems += [
        f"databricks text: {p}"
        for p in statement_problems(
            databricks_sql, dialect="databricks", allowed_tables=allowed_tables, max_rows=max_rows
        )
    ]
    if duckdb_sql is not None:
        problems += [
            f"duckdb text: {p}"
            for p in statement_problems(
                duckdb_sql, dialect="duckdb", allowed_tables=allowed_tables, max_rows=max_rows
            )
        ]
    return problems
