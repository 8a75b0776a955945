"""The join rule: every join links the joined source to an earlier one by a column equality."""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from sqlsafety.errors import SafetyViolation
from sqlsafety.names import normalize_identifier, table_parts
from sqlsafety.prepare import Check, show


def cartesian_join(check: Check) -> None:
    """Every join is an equi-join: USING (...), or an ON condition with, among its top-level
    AND-conjuncts, ``x.col = y.col`` between a column of the joined source and a column of
    a source before it in the same FROM. CROSS, NATURAL and comma joins, ``ON 1=1``,
    ``ON a.x = a.x``, ``ON a.region = 'west'`` and ``ON a.x = b.x OR TRUE`` multiply row
    counts (a row limit caps the output, not the work). Columns must be qualified: an
    unqualified or ambiguous one cannot be placed and so proves nothing."""
    for join in check.of(exp.Join):
        assert isinstance(join, exp.Join)
        if isinstance(join.this, (exp.Unnest, exp.Lateral)):
            continue  # row expansions are judged by the table-function rules
        if not _is_equi_join(join, check.dialect):
            raise SafetyViolation(
                "cartesian_join",
                "join without an equality between columns of the joined tables: "
                f"{show(join, check.dialect, 80)}",
            )


# A source's qualifier: the parts a column may name it by (an alias, or the table's name
# parts, matched as a suffix: `e`, `claims.e`, `main.claims.e`).
Qualifier = tuple[str, ...]


def _is_equi_join(join: exp.Join, dialect: str) -> bool:
    kind = str(join.args.get("kind") or "").upper()
    method = str(join.args.get("method") or "").upper()
    if kind == "CROSS" or method == "NATURAL":
        return False
    if join.args.get("using"):
        return True
    on = join.args.get("on")
    if on is None:
        return False  # a comma join, or JOIN without a condition
    earlier = _earlier_sources(join, dialect)
    if earlier is None:
        return False
    joined = _source_names(join.this, dialect)
    return any(_links(c, joined, earlier, dialect) for c in _conjuncts(on))


def _conjuncts(condition: exp.Expr) -> Iterator[exp.Expr]:
    """The top-level AND-conjuncts (through parentheses); an OR is one conjunct."""
    if isinstance(condition, exp.Paren):
        yield from _conjuncts(condition.this)
    elif isinstance(condition, exp.And):
        yield from _conjuncts(condition.this)
        yield from _conjuncts(condition.expression)
    else:
        yield condition


def _links(
    conjunct: exp.Expr, joined: list[Qualifier], earlier: list[Qualifier], dialect: str
) -> bool:
    """Whether `conjunct` is ``x = y`` with x a key of the joined source and y of an earlier
    one (or the other way round): bare columns, or key-preserving expressions of one
    column such as ``lower(e.device_id) = lower(d.device_id)``."""
    if not isinstance(conjunct, (exp.EQ, exp.NullSafeEQ)):
        return False
    sides = [
        _expression_side(e, joined, earlier, dialect) for e in (conjunct.this, conjunct.expression)
    ]
    return sorted(s for s in sides if s is not None) == ["earlier", "joined"]


# Functions that keep a join key a key: the wrapped column's distinct values stay (mostly)
# distinct. Anything else (``a.x * 0 = length(b.y) * 0``) could be a constant in disguise.
KEY_WRAPPERS = (
    exp.Paren,
    exp.Cast,
    exp.TryCast,
    exp.Lower,
    exp.Upper,
    exp.Trim,
    exp.TsOrDsToDate,
    exp.TimestampTrunc,
    exp.DateTrunc,
    exp.Coalesce,
    exp.Concat,
    exp.Add,
    exp.Sub,
)


def _key_column(e: exp.Expr) -> exp.Column | None:
    """The one column a join key is made of: a bare column, or one wrapped in functions of
    KEY_WRAPPERS whose other arguments are literals (``lower(e.device_id)``,
    ``to_date(a.created_at)``, ``concat('DEV-', d.id)``). None for anything else."""
    if isinstance(e, exp.Column):
        return e if isinstance(e.this, exp.Identifier) else None
    if not isinstance(e, KEY_WRAPPERS):
        return None
    children = [c for c in e.iter_expressions() if not isinstance(c, exp.DataType | exp.Var)]
    keys = [c for c in children if not isinstance(c, exp.Literal)]
    if len(keys) != 1:
        return None
    return _key_column(keys[0])


def _expression_side(
    e: exp.Expr, joined: list[Qualifier], earlier: list[Qualifier], dialect: str
) -> str | None:
    """'joined' or 'earlier' when `e` is a join key (`_key_column`) of that side."""
    column = _key_column(e)
    return _side(column, joined, earlier, dialect) if column is not None else None


def _side(
    column: exp.Column, joined: list[Qualifier], earlier: list[Qualifier], dialect: str
) -> str | None:
    """'joined' or 'earlier' for a column that names exactly one source, else None."""
    if not isinstance(column.this, exp.Identifier):
        return None
    parts = column.parts[:-1]  # catalog, db, table: whichever are given
    if not parts or not all(isinstance(p, exp.Identifier) for p in parts):
        return None  # unqualified: cannot tell which table it belongs to
    wanted = tuple(normalize_identifier(p, dialect) for p in parts)  # type: ignore[arg-type]
    matches = [
        side
        for side, names in (("joined", joined), ("earlier", earlier))
        for name in names
        if name[-len(wanted) :] == wanted
    ]
    return matches[0] if len(matches) == 1 else None


def _own_names(source: exp.Expr, dialect: str) -> list[Qualifier]:
    """How columns may name `source` itself: its alias, else a plain table's name parts."""
    alias = source.args.get("alias")
    if isinstance(alias, exp.TableAlias) and isinstance(alias.this, exp.Identifier):
        return [(normalize_identifier(alias.this, dialect),)]
    if isinstance(source, exp.Table):
        parts = table_parts(source, dialect)
        return [parts] if parts else []
    return []


def _source_names(source: exp.Expr, dialect: str) -> list[Qualifier]:
    """The qualifiers of `source` and, for a parenthesized join (`(a JOIN b ON ...)`, kept
    as a table or unaliased subquery carrying joins), of every source inside it."""
    names = _own_names(source, dialect)
    if isinstance(source, exp.Subquery) and not names:
        inner = source.this
        if isinstance(inner, (exp.Table, exp.Subquery)):
            names += _source_names(inner, dialect)
    for nested in source.args.get("joins") or []:
        names += _source_names(nested.this, dialect)
    return names


def _earlier_sources(join: exp.Join, dialect: str) -> list[Qualifier] | None:
    """Qualifiers of the sources before `join` in its FROM: the first one and the joins
    listed before it. None when the join does not sit where a FROM can be found."""
    owner = join.parent
    joins = owner.args.get("joins") if owner is not None else None
    if owner is None or not joins:
        return None
    if isinstance(owner, exp.Select):
        from_ = owner.args.get("from_")
        if not isinstance(from_, exp.From):
            return None
        names = _source_names(from_.this, dialect)
    elif isinstance(owner, (exp.Table, exp.Subquery)):
        names = _own_names(owner, dialect)  # `(a JOIN b ON ...)`: a carries the joins
    else:
        return None
    for previous in joins:
        if previous is join:
            return names
        names += _source_names(previous.this, dialect)
    return None
