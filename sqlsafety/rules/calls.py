"""Rules about function calls: built-ins by their bare name, from the lists in
`sqlsafety.functions`, and no call that manufactures unbounded output.

The three list rules partition every call: a denied one (`denied_function`), a known
function off the allow list (`function_not_allowed`), a name sqlglot does not know and
the dialect list does not admit (`unknown_function`).
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from sqlsafety.errors import SafetyViolation
from sqlsafety.functions import DATABRICKS_NAMES, classify
from sqlsafety.prepare import Check, show
from sqlsafety.rules.tables import EXPLODERS, in_select_list, is_row_expansion, over_row_values


def qualified_function(check: Check) -> None:
    """Only built-ins by their bare name: ``schema.lower(x)`` could be a user-defined function
    that merely shares a safe built-in's name."""
    for node in check.of(exp.Dot):
        if isinstance(node.expression, exp.Func):
            raise SafetyViolation(
                "qualified_function",
                f"schema-qualified function {show(node, check.dialect)} is not allowed",
            )


def _verdicts(check: Check) -> Iterator[tuple[str, str]]:
    for cls, nodes in check.by_type.items():
        if not issubclass(cls, exp.Func):
            continue
        # the verdict depends on the class alone, except for Anonymous (by name) and for
        # explode/posexplode[_outer] (allowed only over the row's own values: as a LATERAL
        # VIEW row expansion or a projection)
        by_node = cls is exp.Anonymous or cls in EXPLODERS
        for node in nodes if by_node else nodes[:1]:
            if node.find_ancestor(exp.Hint) is not None:
                continue  # judged by the `hint` rule
            parent = node.parent
            if cls in EXPLODERS and (
                (
                    isinstance(parent, exp.Lateral)
                    and parent.this is node
                    and is_row_expansion(parent)
                )
                or (in_select_list(node) and over_row_values(node))
            ):
                continue
            verdict = classify(node, check.dialect)  # type: ignore[arg-type]
            if verdict is not None:
                yield verdict


def _reject(check: Check, rule: str) -> None:
    for found, reason in _verdicts(check):
        if found == rule:
            raise SafetyViolation(rule, reason)


def denied_function(check: Check) -> None:
    """Side effects, sleeps, file/network/LLM access, reflection, session introspection."""
    _reject(check, "denied_function")


def function_not_allowed(check: Check) -> None:
    """A function sqlglot knows that is not on the allow list."""
    _reject(check, "function_not_allowed")


def unknown_function(check: Check) -> None:
    """A name sqlglot does not model and the dialect's list of safe built-ins lacks, or
    (Databricks) a name sqlglot knows from another engine but Databricks does not have."""
    _reject(check, "unknown_function")
    for name in check.called:
        if name not in DATABRICKS_NAMES:
            raise SafetyViolation(
                "unknown_function", f"function {name}() is not a known {check.dialect} function"
            )


MAX_GENERATED_CHARS = 1000
# function class -> the argument that sets how much text it generates
GROWTH_ARGS: tuple[tuple[type[exp.Func], str], ...] = (
    (exp.Repeat, "times"),
    (exp.Pad, "expression"),
)


def resource_limit(check: Check) -> None:
    """Functions that manufacture text (repeat, lpad/rpad) take a literal size of at most
    MAX_GENERATED_CHARS: otherwise a query under the row limit can still return gigabytes
    (``SELECT repeat(x, 100000000) ... LIMIT 5``)."""
    for cls, arg in GROWTH_ARGS:
        for node in check.of(cls):
            size = node.args.get(arg)
            if not (isinstance(size, exp.Literal) and not size.is_string and size.is_int):
                raise SafetyViolation(
                    "resource_limit",
                    f"{show(node, check.dialect, 40)}: the size must be a literal integer",
                )
            if int(size.this) > MAX_GENERATED_CHARS:
                raise SafetyViolation(
                    "resource_limit",
                    f"{show(node, check.dialect, 40)} generates more than "
                    f"{MAX_GENERATED_CHARS} characters",
                )
