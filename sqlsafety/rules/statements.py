"""Rules about what kind of statement this is: one read-only query, nothing else."""

from __future__ import annotations

from sqlglot import exp

from sqlsafety.errors import SafetyViolation
from sqlsafety.prepare import Check, node_types, show


def single_statement(check: Check) -> None:
    """Exactly one statement (empty and comment-only ones, e.g. after a trailing `;`, ignored)."""
    if len(check.statements) != 1:
        raise SafetyViolation(
            "single_statement", f"expected exactly one statement, got {len(check.statements)}"
        )


def command(check: Check) -> None:
    """Anything sqlglot could only keep as raw text (OPTIMIZE, VACUUM, CALL, DO, EXPLAIN...)."""
    for node in check.of(exp.Command):
        raise SafetyViolation(
            "command", f"{node.name.upper() or 'command'} statements are not allowed"
        )


WRITE_OR_SESSION = node_types(
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


def select_into(check: Check) -> None:
    """SELECT ... INTO creates a table."""
    for _ in check.of(exp.Into):
        raise SafetyViolation("select_into", "SELECT ... INTO creates a table and is not allowed")


def locking(check: Check) -> None:
    """FOR UPDATE / FOR SHARE take locks a dashboard read never needs."""
    for _ in check.of(exp.Lock):
        raise SafetyViolation("locking", "locking clauses (FOR UPDATE / FOR SHARE) are not allowed")


def query_root(check: Check) -> None:
    """Every statement is a query: SELECT or a set operation (either may carry CTEs), or a
    parenthesized one followed by its own ORDER BY / LIMIT."""
    for statement in check.statements:
        root = statement.this if isinstance(statement, exp.Subquery) else statement
        if not isinstance(root, (exp.Select, exp.SetOperation)):
            raise SafetyViolation(
                "query_root", f"the statement must be a SELECT, got {type(statement).__name__}"
            )


def recursive_cte(check: Check) -> None:
    """WITH RECURSIVE can run away; KPI queries never need it."""
    for node in check.of(exp.With):
        if node.args.get("recursive"):
            raise SafetyViolation("recursive_cte", "WITH RECURSIVE is not allowed")


# Every non-function node type a checked query may contain. Anything else (time travel,
# session parameters, positional parameters, dialect oddities) is rejected: the list grows
# only when a real query needs it. PIVOT and hints are judged further by `pivot` and `hint`.
ALLOWED_NODES: frozenset[type[exp.Expr]] = frozenset(
    node_types(
        """Select Union Intersect Except Subquery With CTE TableAlias From Join Where Group Having
        Qualify Order Ordered Limit Offset Fetch LimitOptions Distinct Window WindowSpec Table
        Column Identifier Star Alias Tuple Values Lateral Cube Rollup GroupingSets TableSample
        Lambda Filter WithinGroup IgnoreNulls RespectNulls Bracket Dot JSONPath JSONPathRoot
        JSONPathKey JSONPathSubscript JSONPathWildcard JSONPathSlice Interval IntervalSpan
        DataType DataTypeParam Literal Boolean Null Var Paren Neg Not Add Sub Mul Div IntDiv Mod
        DPipe EQ NEQ GT GTE LT LTE NullSafeEQ NullSafeNEQ Is In Between Like ILike SimilarTo
        Escape Any All AtTimeZone FromTimeZone Kwarg PropertyEQ Placeholder HexString RawString
        BitwiseAnd BitwiseOr BitwiseXor BitwiseNot Slice Pivot PivotAlias Hint JoinHint"""
    )
)


def syntax(check: Check) -> None:
    """Only node types on `ALLOWED_NODES` (functions are judged by the function rules)."""
    for cls, nodes in check.by_type.items():
        if cls not in ALLOWED_NODES and not issubclass(cls, exp.Func):
            raise SafetyViolation(
                "syntax", f"{cls.__name__} ({show(nodes[0], check.dialect)}) is not allowed"
            )


MAX_PIVOT_VALUES = 100


def pivot(check: Check) -> None:
    """PIVOT over a literal list of at most MAX_PIVOT_VALUES values, UNPIVOT over a list of
    at most MAX_PIVOT_VALUES columns: the output's width (PIVOT) or its rows per input row
    (UNPIVOT) are fixed by the query text, never by the data."""
    for node in check.of(exp.Pivot):
        if node.args.get("unpivot"):
            _unpivot(node)
            continue
        for field in node.args.get("fields") or []:
            values = field.expressions if isinstance(field, exp.In) else None
            if not values or not all(
                isinstance(v, exp.Literal)
                or (isinstance(v, exp.PivotAlias) and isinstance(v.this, exp.Literal))
                for v in values
            ):
                raise SafetyViolation("pivot", "PIVOT ... IN takes a list of literal values")
            if len(values) > MAX_PIVOT_VALUES:
                raise SafetyViolation(
                    "pivot", f"PIVOT over more than {MAX_PIVOT_VALUES} values is not allowed"
                )


def _unpivot(node: exp.Expr) -> None:
    for field in node.args.get("fields") or []:
        columns = field.expressions if isinstance(field, exp.In) else None
        if not columns or not all(
            isinstance(c, exp.Column)
            or (isinstance(c, exp.PivotAlias) and isinstance(c.this, exp.Column))
            for c in columns
        ):
            raise SafetyViolation("pivot", "UNPIVOT ... IN takes a list of columns")
        if len(columns) > MAX_PIVOT_VALUES:
            raise SafetyViolation(
                "pivot", f"UNPIVOT over more than {MAX_PIVOT_VALUES} columns is not allowed"
            )


JOIN_HINTS = frozenset(
    [
        "BROADCAST",
        "BROADCASTJOIN",
        "MAPJOIN",
        "MERGE",
        "SHUFFLE_MERGE",
        "MERGEJOIN",
        "SHUFFLE_HASH",
        "SHUFFLE_REPLICATE_NL",
    ]
)
PARTITION_HINTS = frozenset(["COALESCE", "REPARTITION", "REPARTITION_BY_RANGE", "REBALANCE"])
MAX_PARTITIONS = 1000


def hint(check: Check) -> None:
    """Optimizer hints: Spark's join strategy hints over the query's own tables and
    aliases (the names are judged by `table_not_allowed`), and partitioning hints with a
    literal count of at most MAX_PARTITIONS and column names. Nothing else hides there."""
    for node in check.of(exp.Hint):
        for item in node.expressions:
            if isinstance(item, exp.JoinHint):
                name = str(item.this).upper()
                ok = name in JOIN_HINTS and all(isinstance(t, exp.Table) for t in item.expressions)
            elif isinstance(item, exp.Func):  # REPARTITION(...) is Anonymous, COALESCE(n) not
                name = (
                    str(item.this).upper() if isinstance(item, exp.Anonymous) else item.sql_name()
                )
                args = list(item.iter_expressions())
                ok = name in PARTITION_HINTS and all(_partition_arg(a) for a in args)
            else:
                name, ok = type(item).__name__, False
            if not ok:
                raise SafetyViolation("hint", f"hint {show(item, check.dialect)} is not allowed")


def _partition_arg(arg: exp.Expr) -> bool:
    if isinstance(arg, exp.Literal) and not arg.is_string and arg.is_int:
        return 1 <= int(arg.this) <= MAX_PARTITIONS
    return isinstance(arg, exp.Column) and isinstance(arg.this, exp.Identifier)
