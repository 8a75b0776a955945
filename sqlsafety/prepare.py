"""The setup step every rule relies on: parse once, in an explicit dialect, and index the
tree. It is not a rule: it runs before all of them, and no rule changes what it built.

`prepare` raises only `UnparseableSql` (rule ``parse``). Every statement the text holds is
indexed, so a rule judges all of them whether or not `single_statement` has run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import Token, TokenType

from sqlsafety.dialect import datediff_with_unit_as_timestampdiff, window_calls_as_functions
from sqlsafety.errors import PolicyError, SafetyViolation, UnparseableSql
from sqlsafety.names import DIALECTS, TableName

MAX_SQL_CHARS = 100_000

# Built once: Dialect.get_or_raise(str) constructs a new instance on every call (~35 µs).
ENGINES: dict[str, Dialect] = {name: Dialect.get_or_raise(name) for name in DIALECTS}


def engine(name: str) -> Dialect:
    found = ENGINES.get(name)
    if found is None:
        raise PolicyError(f"unsupported dialect {name!r}: expected one of {', '.join(DIALECTS)}")
    return found


@dataclass(slots=True)
class Check:
    """One check in progress: the inputs, the parsed statements and their shared index.

    Rules read `statements` and `by_type`; they may record what they found (`tables`,
    `limit`) for the final rendering step, but never read what another rule recorded.
    """

    dialect: str
    allowed: frozenset[TableName]
    max_rows: int
    schema: dict[TableName, frozenset[str]] | None
    statements: list[exp.Expr]  # every non-empty statement, in text order
    called: tuple[str, ...] = ()  # names of calls to functions sqlglot knows, as written
    by_type: dict[type[exp.Expr], list[exp.Expr]] = field(default_factory=dict)
    tables: set[TableName] = field(default_factory=set)  # recorded by table_not_allowed
    limit: int | None = None  # recorded by row_limit: None means "add max_rows"
    sql: str = ""  # the candidate text as given (for rules about the text itself)
    hidden_columns: bool = False  # a metric's definition reads hidden metadata columns

    def of(self, *classes: type[exp.Expr]) -> Iterator[exp.Expr]:
        """Every node that is an instance of one of `classes`."""
        for cls, nodes in self.by_type.items():
            if issubclass(cls, classes):
                yield from nodes


def prepare(
    sql: str,
    *,
    dialect: str,
    allowed: frozenset[TableName],
    max_rows: int,
    schema: Mapping[TableName, frozenset[str]] | None = None,
    hidden_columns: bool = False,
) -> Check:
    """Parse `sql` and index every node by its exact type (one walk for all rules)."""
    parser = engine(dialect)
    if len(sql) > MAX_SQL_CHARS:
        raise SafetyViolation("parse", f"SQL longer than {MAX_SQL_CHARS} characters")
    try:
        tokens = parser.tokenize(sql)
        if dialect == "databricks":
            tokens = window_calls_as_functions(datediff_with_unit_as_timestampdiff(tokens))
        parsed = parser.parser().parse(tokens, sql)
    except (ParseError, TokenError) as exc:
        raise UnparseableSql(f"not valid {dialect} SQL: {str(exc).splitlines()[0][:200]}") from None
    except RecursionError:
        raise UnparseableSql("SQL nested too deeply") from None
    # empty and comment-only statements (e.g. after a trailing `;`) do not count
    statements = [_unwrap(s) for s in parsed if s is not None and not isinstance(s, exp.Semicolon)]
    by_type: dict[type[exp.Expr], list[exp.Expr]] = {}
    for statement in statements:
        for node in statement.walk():
            by_type.setdefault(type(node), []).append(node)
    return Check(
        dialect=dialect,
        allowed=allowed,
        max_rows=max_rows,
        schema=dict(schema) if schema is not None else None,
        statements=statements,
        by_type=by_type,
        called=called_names(tokens, parser) if dialect == "databricks" else (),
        sql=sql,
        hidden_columns=hidden_columns,
    )


_NOT_A_CALL_AFTER = {TokenType.ALIAS, TokenType.DCOLON}  # `AS DECIMAL(10, 2)`, `::decimal(3, 1)`


def called_names(tokens: list[Token], dialect: Dialect) -> tuple[str, ...]:
    """The names, as written (lower-cased), of calls to functions sqlglot's parser knows for
    `dialect`: it would accept other engines' spellings too, and re-render them."""
    known = _known_function_names(dialect)
    return tuple(
        tok.text.lower()
        for i, tok in enumerate(tokens[:-1])
        if tokens[i + 1].token_type == TokenType.L_PAREN
        and tok.text.upper() in known
        and not (i and tokens[i - 1].token_type in _NOT_A_CALL_AFTER)
    )


_KNOWN: dict[type[Dialect], frozenset[str]] = {}


def _known_function_names(dialect: Dialect) -> frozenset[str]:
    key = type(dialect)
    if key not in _KNOWN:
        parser = dialect.parser_class
        names = frozenset(parser.FUNCTIONS) | frozenset(parser.FUNCTION_PARSERS)
        _KNOWN[key] = names - {"AND", "OR"}  # operators before a parenthesis
    return _KNOWN[key]


def _unwrap(statement: exp.Expr) -> exp.Expr:
    """`(SELECT ...)` as a whole statement is that query (the parentheses mean nothing)."""
    while (
        isinstance(statement, exp.Subquery)
        and isinstance(statement.this, exp.Query)
        and not any(v for k, v in statement.args.items() if k != "this")
    ):
        statement = statement.this.pop()
    return statement


def show(node: object, dialect: str, width: int = 60) -> str:
    """A short SQL rendering of `node` for a rejection reason."""
    if not isinstance(node, exp.Expr):
        return type(node).__name__
    try:
        return node.sql(dialect)[:width]
    except RecursionError:
        return type(node).__name__


def node_types(names: str) -> tuple[type[exp.Expr], ...]:
    """sqlglot classes by name (an AttributeError means sqlglot renamed one: fix the list)."""
    return tuple(getattr(exp, n) for n in names.split())
