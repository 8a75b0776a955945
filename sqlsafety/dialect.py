"""Parse Databricks SQL with sqlglot without losing what DATEDIFF means.

Databricks has two DATEDIFFs: DATEDIFF(end, start) counts calendar days between the two
dates, DATEDIFF(unit, start, end) is TIMESTAMPDIFF (whole elapsed units). sqlglot 30
parses both to the same `exp.DateDiff(unit=DAY)` node and prints it back as
DATEDIFF(DAY, start, end), so a parse -> print round trip silently turns "crossed
midnight = 1 day" into "24 hours = 1 day" (seen on real Spark).

`parse` renames 3-argument DATEDIFF/DATE_DIFF calls to TIMESTAMPDIFF at the token level
before parsing, so every remaining `exp.DateDiff` is the 2-argument form, and
`keep_two_argument_datediff` turns those into a literal DATEDIFF(end, start) call for
SQL that will be printed back in the Databricks dialect.
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ErrorLevel
from sqlglot.tokens import Token, TokenType

DATABRICKS = Dialect.get_or_raise("databricks")
_DATEDIFF_NAMES = {"DATEDIFF", "DATE_DIFF"}
_OPENING = {TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE}
_CLOSING = {TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE}


def parse(sql: str) -> list[exp.Expr]:
    """Every statement (or a bare expression) in `sql`; raises sqlglot's ParseError."""
    tokens = window_calls_as_functions(
        datediff_with_unit_as_timestampdiff(DATABRICKS.tokenize(sql))
    )
    trees = DATABRICKS.parser(error_level=ErrorLevel.RAISE).parse(tokens, sql)
    return [t for t in trees if t is not None]


def keep_two_argument_datediff(tree: exp.Expr) -> exp.Expr:
    """Make 2-argument DATEDIFF nodes print as DATEDIFF(end, start) again (in place)."""
    root = tree
    for node in reversed(list(tree.find_all(exp.DateDiff))):  # deepest first
        call = exp.Anonymous(this="DATEDIFF", expressions=[node.this, node.expression])
        if node is root:
            root = call
        else:
            node.replace(call)
    return root


def datediff_with_unit_as_timestampdiff(tokens: list[Token]) -> list[Token]:
    """Rename DATEDIFF/DATE_DIFF calls with 3 arguments to TIMESTAMPDIFF (their meaning)."""
    out = list(tokens)
    for i, tok in enumerate(tokens[:-1]):
        if (
            tok.text.upper() in _DATEDIFF_NAMES
            and tokens[i + 1].token_type == TokenType.L_PAREN
            and argument_count(tokens, i + 1) == 3
        ):
            out[i] = Token(
                tok.token_type, "TIMESTAMPDIFF", tok.line, tok.col, tok.start, tok.end, tok.comments
            )
    return out


def argument_count(tokens: list[Token], open_index: int) -> int:
    """Arguments of the call whose '(' is at `open_index` (top-level commas + 1)."""
    depth, commas = 0, 0
    for tok in tokens[open_index:]:
        if tok.token_type in _OPENING:
            depth += 1
        elif tok.token_type in _CLOSING:
            depth -= 1
            if depth == 0:
                break
        elif tok.token_type == TokenType.COMMA and depth == 1:
            commas += 1
    return commas + 1


def window_calls_as_functions(tokens: list[Token]) -> list[Token]:
    """`window(ts, '1 hour')` (Spark's time bucketing) as a plain function call: sqlglot
    reads WINDOW as the named-window keyword and fails on it outside the select list."""
    out = list(tokens)
    for i, tok in enumerate(tokens[:-1]):
        if tok.token_type == TokenType.WINDOW and tokens[i + 1].token_type == TokenType.L_PAREN:
            out[i] = Token(
                TokenType.VAR, tok.text, tok.line, tok.col, tok.start, tok.end, tok.comments
            )
    return out


def keep_ordered_set_percentiles(tree: exp.Expr) -> exp.Expr:
    """Keep ``percentile_cont(p) WITHIN GROUP (ORDER BY x)`` (exact, interpolated) and
    ``percentile_disc`` (exact, discrete) as written, in place: sqlglot's Databricks
    generator prints both as ``PERCENTILE_APPROX(x, p)``, another value on Databricks."""
    for node in list(tree.find_all(exp.PercentileCont, exp.PercentileDisc)):
        if isinstance(node.parent, exp.WithinGroup):
            name = "PERCENTILE_CONT" if isinstance(node, exp.PercentileCont) else "PERCENTILE_DISC"
            node.replace(exp.Anonymous(this=name, expressions=[node.this]))
    return tree


def faithful_databricks(tree: exp.Expr) -> exp.Expr:
    """`tree` made to print (in the Databricks dialect) with the meaning it was parsed
    with: every rewrite of sqlglot's generator that changes an answer on Databricks itself
    is undone here, each proven on Spark by the fidelity suite (tests/integration/test_fidelity.py)."""
    return keep_two_argument_datediff(keep_ordered_set_percentiles(tree))
