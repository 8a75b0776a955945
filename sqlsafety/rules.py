"""The safety rules, in the style of sqlglot's optimizer: one small function per rule,
chained in `RULES`. Each takes the `Check` in progress and either returns (the query
passes that rule) or raises `SafetyViolation(rule, reason)`.

The tree is walked once (in `single_statement`, nodes bucketed by exact type); rules look at
the node types they care about instead of re-walking the tree. Only `row_limit` changes
the tree (it adds the missing LIMIT).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from sqlglot import exp
from sqlglot.errors import OptimizeError
from sqlglot.optimizer.scope import Scope, traverse_scope

from sqlsafety.errors import SafetyViolation
from sqlsafety.functions import classify
from sqlsafety.names import TableName, display, normalize_identifier, qualify, table_parts


@dataclass(slots=True)
class Check:
    """One check in progress: inputs, the parsed statements, and what rules found."""

    dialect: str
    allowed: frozenset[TableName]
    max_rows: int
    schema: dict[TableName, frozenset[str]] | None
    statements: list[exp.Expr | None]
    tree: exp.Expr = field(default_factory=exp.Null)  # the one statement, set by single_statement
    by_type: dict[type[exp.Expr], list[exp.Expr]] = field(default_factory=dict)
    tables: set[TableName] = field(default_factory=set)
    limit: int = 0

    def of(self, *classes: type[exp.Expr]) -> Iterator[exp.Expr]:
        """Every node that is an instance of one of `classes`."""
        for cls, nodes in self.by_type.items():
            if issubclass(cls, classes):
                yield from nodes


Rule = Callable[[Check], None]


def _show(node: object, dialect: str, width: int = 60) -> str:
    """A short SQL rendering of `node` for a rejection reason."""
    if not isinstance(node, exp.Expr):
        return type(node).__name__
    try:
        return node.sql(dialect)[:width]
    except RecursionError:
        return type(node).__name__


def _types(names: str) -> tuple[type[exp.Expr], ...]:
    return tuple(getattr(exp, n) for n in names.split())


# ----------------------------------------------------------------------------- statements


def single_statement(check: Check) -> None:
    """Exactly one statement (empty and comment-only ones, e.g. after a trailing `;`, ignored)."""
    statements = [s for s in check.statements if s is not None and not isinstance(s, exp.Semicolon)]
    if len(statements) != 1:
        raise SafetyViolation(
            "single_statement", f"expected exactly one statement, got {len(statements)}"
        )
    check.tree = statements[0]
    by_type: dict[type[exp.Expr], list[exp.Expr]] = {}
    for node in check.tree.walk():
        by_type.setdefault(type(node), []).append(node)
    check.by_type = by_type


def no_commands(check: Check) -> None:
    """Anything sqlglot could only keep as raw text (OPTIMIZE, VACUUM, CALL, DO, EXPLAIN...)."""
    for node in check.of(exp.Command):
        raise SafetyViolation(
            "command", f"{node.name.upper() or 'command'} statements are not allowed"
        )


WRITE_OR_SESSION = _types(
    """Insert Update Delete Merge Create Drop Alter AlterColumn AlterRename AlterSet AlterSession
    TruncateTable Grant Revoke Copy Set Use Cache Uncache Refresh Pragma Transaction Commit
    Rollback LoadData Describe Show Analyze Kill Export Attach Detach Install Comment Execute
    ExecuteSql Declare Summarize Put Get Undrop SwapTable MultitableInserts Returning
    OnConflict LockingStatement UserDefinedFunction StoredProcedure"""
)


def read_only(check: Check) -> None:
    """No DML, DDL, privilege or session statement anywhere in the tree (data-modifying CTEs too)."""
    for node in check.of(*WRITE_OR_SESSION):
        raise SafetyViolation(
            "read_only", f"{type(node).__name__.upper()} is not allowed: read-only SELECT only"
        )


def no_select_into(check: Check) -> None:
    for _ in check.of(exp.Into):
        raise SafetyViolation("select_into", "SELECT ... INTO creates a table and is not allowed")


def no_locking(check: Check) -> None:
    for _ in check.of(exp.Lock):
        raise SafetyViolation("locking", "locking clauses (FOR UPDATE / FOR SHARE) are not allowed")


def query_root(check: Check) -> None:
    """The statement is a query: SELECT or a set operation (either may carry CTEs)."""
    if not isinstance(check.tree, (exp.Select, exp.SetOperation)):
        raise SafetyViolation(
            "query_root", f"the statement must be a SELECT, got {type(check.tree).__name__}"
        )


def no_recursive_cte(check: Check) -> None:
    """WITH RECURSIVE can run away; KPI queries never need it."""
    for node in check.of(exp.With):
        if node.args.get("recursive"):
            raise SafetyViolation("recursive_cte", "WITH RECURSIVE is not allowed")


# Every non-function node type a checked query may contain. Anything else (PIVOT, time
# travel, hints, session parameters, positional parameters, dialect oddities) is rejected:
# the list grows only when a real query needs it.
ALLOWED_NODES: frozenset[type[exp.Expr]] = frozenset(
    _types(
        """Select Union Intersect Except Subquery With CTE TableAlias From Join Where Group Having
        Qualify Order Ordered Limit Offset Fetch LimitOptions Distinct Window WindowSpec Table
        Column Identifier Star Alias Tuple Values Lateral Cube Rollup GroupingSets TableSample
        Lambda Filter WithinGroup IgnoreNulls RespectNulls Bracket Dot JSONPath JSONPathRoot
        JSONPathKey JSONPathSubscript JSONPathWildcard JSONPathSlice Interval IntervalSpan
        DataType DataTypeParam Literal Boolean Null Var Paren Neg Not Add Sub Mul Div IntDiv Mod
        DPipe EQ NEQ GT GTE LT LTE NullSafeEQ NullSafeNEQ Is In Between Like ILike SimilarTo
        Escape Any All AtTimeZone FromTimeZone Kwarg PropertyEQ Placeholder HexString RawString
        BitwiseAnd BitwiseOr BitwiseXor BitwiseNot Slice"""
    )
)


def allowed_syntax(check: Check) -> None:
    for cls, nodes in check.by_type.items():
        if cls not in ALLOWED_NODES and not issubclass(cls, exp.Func):
            raise SafetyViolation(
                "syntax", f"{cls.__name__} ({_show(nodes[0], check.dialect)}) is not allowed"
            )


# ----------------------------------------------------------------------------- tables


def no_table_functions(check: Check) -> None:
    """Rows come from named tables or subqueries only: no table-valued or generator
    functions in FROM / JOIN / LATERAL (read_files, range, generate_series, unnest, dblink...)."""
    for node in check.of(exp.Table):
        this = node.this
        if not isinstance(this, exp.Identifier):
            what = _show(this, check.dialect) if this is not None else "ROWS FROM"
            raise SafetyViolation("table_function", f"table-valued function {what} is not allowed")
    for node in check.of(exp.From, exp.Join, exp.Lateral):
        this = node.this
        if isinstance(this, exp.Func) or (
            isinstance(node, exp.Lateral) and not isinstance(this, exp.Subquery)
        ):
            raise SafetyViolation(
                "table_function",
                f"table-valued function {_show(this, check.dialect)} is not allowed",
            )


FILE_FORMATS = frozenset(
    (
        "csv",
        "json",
        "parquet",
        "orc",
        "avro",
        "text",
        "binaryfile",
        "delta",
        "xml",
        "jdbc",
        "cloudfiles",
        "iceberg",
        "hudi",
        "image",
    )
)


def no_file_readers(check: Check) -> None:
    """Path readers such as csv.`/etc/passwd` or parquet.`s3://bucket/x`."""
    for node in check.of(exp.Table):
        assert isinstance(node, exp.Table)
        parts = [p.name for p in node.parts]
        if (len(parts) == 2 and parts[0].lower() in FILE_FORMATS) or any(
            "/" in p or ":" in p for p in parts
        ):
            raise SafetyViolation(
                "file_reader", f"reading files by path ({'.'.join(parts)}) is not allowed"
            )


def _cte_name(cte: exp.Expr, dialect: str) -> str | None:
    alias = cte.args.get("alias")
    ident = alias.this if isinstance(alias, exp.TableAlias) else None
    return normalize_identifier(ident, dialect) if isinstance(ident, exp.Identifier) else None


def is_cte_reference(table: exp.Table, name: str, dialect: str) -> bool:
    """Whether an unqualified `table` names a CTE visible where it stands: the CTEs of every
    enclosing WITH, except that inside a CTE body only the CTEs defined before it count
    (all of them for WITH RECURSIVE). A CTE defined elsewhere is out of scope."""
    below: exp.Expr | None = None
    child: exp.Expr = table
    node = table.parent
    while node is not None:
        with_ = node.args.get("with_")
        if isinstance(with_, exp.With):
            ctes = with_.expressions
            visible = ctes
            if child is with_ and not with_.args.get("recursive"):
                position = next(i for i, cte in enumerate(ctes) if cte is below)
                visible = ctes[:position]
            if any(_cte_name(cte, dialect) == name for cte in visible):
                return True
        below, child, node = child, node, node.parent
    return False


def allowed_tables(check: Check) -> None:
    """Every named table, once CTE references are set aside, is on the allowlist."""
    dialect = check.dialect
    for node in check.of(exp.Table):
        assert isinstance(node, exp.Table)
        parts = table_parts(node, dialect)
        if parts is None:  # guarded by no_table_functions; stay closed if rules are reordered
            raise SafetyViolation(
                "table_not_allowed", f"unsupported table reference {_show(node, dialect)}"
            )
        if len(parts) == 1 and is_cte_reference(node, parts[0], dialect):
            continue
        name = qualify(parts, dialect)
        if name not in check.allowed:
            raise SafetyViolation(
                "table_not_allowed", f"table {display(name)} is not on the allowlist"
            )
        check.tables.add(name)


# ----------------------------------------------------------------------------- functions


def no_qualified_functions(check: Check) -> None:
    """Only built-ins by their bare name: ``schema.lower(x)`` could be a user-defined function
    that merely shares a safe built-in's name."""
    for node in check.of(exp.Dot):
        if isinstance(node.expression, exp.Func):
            raise SafetyViolation(
                "qualified_function",
                f"schema-qualified function {_show(node, check.dialect)} is not allowed",
            )


def allowed_functions(check: Check) -> None:
    """Known, allowlisted functions only (see `sqlsafety.functions`)."""
    for cls, nodes in check.by_type.items():
        if not issubclass(cls, exp.Func):
            continue
        # the verdict depends on the class alone, except for Anonymous (by name)
        for node in nodes if cls is exp.Anonymous else nodes[:1]:
            verdict = classify(node, check.dialect)  # type: ignore[arg-type]
            if verdict is not None:
                raise SafetyViolation(*verdict)


def no_cartesian_joins(check: Check) -> None:
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
                f"{_show(join, check.dialect, 80)}",
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


def _unparen(e: exp.Expr) -> exp.Expr:
    while isinstance(e, exp.Paren):
        e = e.this
    return e


def _links(
    conjunct: exp.Expr, joined: list[Qualifier], earlier: list[Qualifier], dialect: str
) -> bool:
    """Whether `conjunct` is ``col = col`` with one side from the joined source and the
    other from an earlier one."""
    if not isinstance(conjunct, (exp.EQ, exp.NullSafeEQ)):
        return False
    left, right = _unparen(conjunct.this), _unparen(conjunct.expression)
    if not (isinstance(left, exp.Column) and isinstance(right, exp.Column)):
        return False
    sides = [_side(col, joined, earlier, dialect) for col in (left, right)]
    return sorted(s for s in sides if s is not None) == ["earlier", "joined"]


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


MAX_GENERATED_CHARS = 1000
# function class -> the argument that sets how much text it generates
GROWTH_ARGS: tuple[tuple[type[exp.Func], str], ...] = (
    (exp.Repeat, "times"),
    (exp.Pad, "expression"),
)


def bounded_growth(check: Check) -> None:
    """Functions that manufacture text (repeat, lpad/rpad) take a literal size of at most
    MAX_GENERATED_CHARS: otherwise a query under the row limit can still return gigabytes
    (``SELECT repeat(x, 100000000) ... LIMIT 5``)."""
    for cls, arg in GROWTH_ARGS:
        for node in check.of(cls):
            size = node.args.get(arg)
            if not (isinstance(size, exp.Literal) and not size.is_string and size.is_int):
                raise SafetyViolation(
                    "resource_limit",
                    f"{_show(node, check.dialect, 40)}: the size must be a literal integer",
                )
            if int(size.this) > MAX_GENERATED_CHARS:
                raise SafetyViolation(
                    "resource_limit",
                    f"{_show(node, check.dialect, 40)} generates more than "
                    f"{MAX_GENERATED_CHARS} characters",
                )


# ----------------------------------------------------------------------------- columns


def _lambda_variable(column: exp.Column, dialect: str) -> bool:
    name = (
        normalize_identifier(column.this, dialect)
        if isinstance(column.this, exp.Identifier)
        else None
    )
    node = column.parent
    while node is not None:
        if isinstance(node, exp.Lambda) and any(
            isinstance(v, exp.Identifier) and normalize_identifier(v, dialect) == name
            for v in node.expressions
        ):
            return True
        node = node.parent
    return False


def _source_columns(scope: Scope, check: Check) -> dict[str, frozenset[str] | None]:
    """{normalized alias: known columns, or None when the source's columns are unknown}."""
    assert check.schema is not None
    out: dict[str, frozenset[str] | None] = {}
    for _name, (_node, source) in scope.selected_sources.items():
        if isinstance(source, exp.Table) and isinstance(source.this, exp.Identifier):
            alias = source.args.get("alias")
            ident = alias.this if isinstance(alias, exp.TableAlias) and alias.this else source.this
            parts = table_parts(source, check.dialect)
            columns = None
            if parts is not None and not (
                len(parts) == 1 and is_cte_reference(source, parts[0], check.dialect)
            ):
                columns = check.schema.get(qualify(parts, check.dialect))
            out[normalize_identifier(ident, check.dialect)] = columns
        else:
            out[_name.lower() if check.dialect == "databricks" else _name] = None
    return out


def _select_aliases(scope: Scope, dialect: str) -> set[str]:
    """Names the select list defines with AS (usable in ORDER BY, HAVING, lateral aliases)."""
    expression = scope.expression
    if not isinstance(expression, exp.Select):
        return set()
    return {
        a.alias.lower() if dialect == "databricks" else a.alias
        for a in expression.expressions
        if isinstance(a, exp.Alias)
    }


def known_columns(check: Check) -> None:
    """With a schema: a column of a table whose columns are known must exist. An
    unqualified column is checked only when every source it could come from (this scope
    and the enclosing ones) has a known schema; select-list aliases and lambda variables
    are not columns."""
    if check.schema is None:
        return
    dialect = check.dialect
    try:
        scopes = traverse_scope(check.tree)
        sources = {id(s): _source_columns(s, check) for s in scopes}
    except OptimizeError:
        return  # ambiguous aliases: the warehouse will report them; nothing unsafe here
    for scope in scopes:
        if not isinstance(scope.expression, exp.Select):
            continue
        for column in scope.columns:
            this = column.this
            if not isinstance(this, exp.Identifier) or _lambda_variable(column, dialect):
                continue
            name = normalize_identifier(this, dialect)
            qualifier = column.args.get("table")
            if isinstance(qualifier, exp.Identifier):
                known = sources[id(scope)].get(normalize_identifier(qualifier, dialect))
                if known is not None and name not in known:
                    raise SafetyViolation(
                        "unknown_column", f"column {qualifier.name}.{this.name} does not exist"
                    )
                continue
            if name in _select_aliases(scope, dialect):
                continue
            candidates = _unqualified_candidates(scope, sources)
            if candidates is not None and name not in candidates:
                raise SafetyViolation(
                    "unknown_column", f"column {this.name} does not exist in the queried tables"
                )


def _unqualified_candidates(
    scope: Scope, sources: dict[int, dict[str, frozenset[str] | None]]
) -> set[str] | None:
    """The columns an unqualified name may refer to, or None when some source is unknown."""
    candidates: set[str] = set()
    seen_source = False
    current: Scope | None = scope
    while current is not None:
        for columns in sources.get(id(current), {}).values():
            if columns is None:
                return None
            seen_source = True
            candidates |= columns
        # only a subquery (or a LATERAL derived table) can see the enclosing query's columns
        current = current.parent if (current.is_subquery or current.can_be_correlated) else None
    return candidates if seen_source else None


# ----------------------------------------------------------------------------- row limit


def _literal_int(node: exp.Expr | None, what: str, dialect: str) -> int:
    if isinstance(node, exp.Literal) and not node.is_string and node.is_int:
        return int(node.this)
    raise SafetyViolation(
        "row_limit", f"{what} must be a literal integer, got {_show(node, dialect, 40)}"
    )


def row_limit(check: Check) -> None:
    """The outermost query returns at most `max_rows` rows: a LIMIT is added when missing,
    a larger or non-literal one (LIMIT ALL, expressions, parameters) is rejected."""
    root = check.tree
    limit = root.args.get("limit")
    if limit is None:
        root.set("limit", exp.Limit(expression=exp.Literal.number(check.max_rows)))
        check.limit = check.max_rows
        return
    options = limit.args.get("limit_options")
    if isinstance(options, exp.LimitOptions) and (
        options.args.get("percent") or options.args.get("with_ties")
    ):
        raise SafetyViolation("row_limit", "PERCENT / WITH TIES limits are not allowed")
    if isinstance(limit, exp.Fetch):
        count = limit.args.get("count")
        rows = 1 if count is None else _literal_int(count, "FETCH FIRST", check.dialect)
    elif (
        isinstance(limit, exp.Limit)
        and not limit.args.get("expressions")
        and limit.args.get("offset") is None
    ):
        rows = _literal_int(limit.args.get("expression"), "LIMIT", check.dialect)
    else:
        raise SafetyViolation(
            "row_limit", f"unsupported row limit {_show(limit, check.dialect, 40)}"
        )
    if rows > check.max_rows:
        raise SafetyViolation(
            "row_limit", f"LIMIT {rows} is above the maximum of {check.max_rows} rows"
        )
    check.limit = rows


RULES: tuple[Rule, ...] = (
    single_statement,
    no_commands,
    read_only,
    no_select_into,
    no_locking,
    query_root,
    no_recursive_cte,
    no_table_functions,
    no_file_readers,
    allowed_syntax,
    allowed_tables,
    no_qualified_functions,
    allowed_functions,
    no_cartesian_joins,
    bounded_growth,
    known_columns,
    row_limit,
)
