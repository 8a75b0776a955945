"""The embedded engine's rule: run a construct only if it is verified for its argument types.

Every function call, operator and cast of a query is named by a *construct key*: its
Databricks name and the type family of each argument, e.g. ``date_add(timestamp,
integer)``, ``/(decimal, integer)``, ``cast(string, AS DATE)`` or ``date_format(timestamp,
'yyyy-MM')`` (units and format patterns count by their literal spelling). The embedded
DuckDB engine runs a query only if every key is in the verified set
(adapters/embedded_verified.json), which the differential test
(tests/integration/test_embedded_verified.py, `make verified`) writes after running cases
for each key on local Spark (ANSI, UTC) and on DuckDB through the production path; a key
enters the set only when every case agrees (value, NULL, error, and result type). Anything
else, or an argument whose type cannot be known, is refused with `EmbeddedUnsupported`
naming the construct ("... runs on Databricks").

Types come from sqlglot's `annotate_types` over the lakehouse schema (adapters/lakehouse
TABLES); a numeric literal is typed as Spark types it (``1.5`` is a DECIMAL, ``1e3`` a
DOUBLE); the result type of a verified construct is the one the differential test saw.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from sqlglot import exp
from sqlglot.optimizer.scope import Scope
from sqlglot.time import format_time

from adapters.embedded_keys import OPERATORS, construct_name, literal_family, type_family
from adapters.embedded_refusals import EmbeddedUnsupported
from adapters.embedded_typing import (
    branches,
    column_sources,
    retype,
    typed,
    widen,
)
from metricsql.dialect import DATABRICKS as _DATABRICKS

VERIFIED_PATH = Path(__file__).with_name("embedded_verified.json")

# boolean connectives and wrappers: the same meaning on both engines, not gated
_STRUCTURAL = (exp.And, exp.Or, exp.Not, exp.Xor)
# functions whose argument list is a bag: the key lists each family once, sorted
_VARIADIC = (
    exp.Coalesce,
    exp.Greatest,
    exp.Least,
    exp.Concat,
    exp.ConcatWs,
    exp.Array,
    exp.Struct,
    exp.Case,
    exp.In,
    exp.VarMap,
    exp.DecodeCase,
)
# arguments that count by their literal spelling (units, format patterns)
_LITERAL_ARGS = {"unit", "format", "decimals", "length"}
_LITERAL_ARGS_OF: dict[type[exp.Expr], set[str]] = {
    exp.FromJson: {"expression"},  # the DDL schema
    exp.JSONExtract: {"expression"},  # the JSON path
    exp.JSONExtractScalar: {"expression"},
    # regular expressions: Java's and RE2's differ by pattern, so each pattern is its own key
    exp.RegexpSplit: {"expression"},
    exp.RegexpLike: {"expression"},
    exp.RegexpILike: {"expression"},
    exp.RegexpExtract: {"expression", "group"},  # the group: one the pattern has, or an error
    exp.RegexpCount: {"expression"},
    exp.RegexpReplace: {"expression", "replacement"},
}
# functions sqlglot keeps by name, and the positions of their literal arguments
_LITERAL_POSITIONS: dict[str, set[int]] = {"date_part": {0}, "datepart": {0}, "format_number": {1}}


@dataclass(frozen=True)
class VerifiedSet:
    """Verified construct keys -> the result family both engines gave."""

    results: Mapping[str, str]
    everything: bool = False  # the differential test's own runs: nothing gated

    @classmethod
    def load(cls, path: Path = VERIFIED_PATH) -> VerifiedSet:
        data = json.loads(path.read_text())
        return cls(results=dict(data["verified"]))


UNGATED = VerifiedSet(results={}, everything=True)


@cache
def default_verified() -> VerifiedSet:
    return VerifiedSet.load()


@dataclass(frozen=True)
class Argument:
    """One argument of a construct: its node, its family, whether the differential test
    replaces it by sample values (units, patterns, types and lambdas are kept as written)
    and whether its family is part of the key (a CASE condition is not)."""

    node: exp.Expr = field(compare=False, hash=False, repr=False)
    family: str | None
    replace: bool = True
    in_key: bool = True


@dataclass(frozen=True)
class Construct:
    """One gated node: its key and the node (an example for the differential test)."""

    name: str
    args: tuple[str | None, ...]
    node: exp.Expr = field(compare=False, hash=False, repr=False)
    arguments: tuple[Argument, ...] = field(default=(), compare=False, hash=False, repr=False)

    @property
    def key(self) -> str:
        return f"{self.name}({', '.join(a or '?' for a in self.args)})"


def check_verified(tree: exp.Expr, verified: VerifiedSet) -> tuple[exp.Expr, tuple[str, ...]]:
    """The typed copy of `tree` (what the translation rules rewrite) and the approximate
    constructs it uses; raise `EmbeddedUnsupported` for the first construct of `tree` not
    verified for its argument types."""
    annotated = typed(tree)
    if verified.everything:
        return annotated, ()
    if any(p.args.get("unpivot") for p in annotated.find_all(exp.Pivot)):
        raise EmbeddedUnsupported("UNPIVOT (the type of its value column is not known here)")
    walker = _Walker(verified.results, collect=False)
    walker.run(annotated)
    return annotated, tuple(sorted(walker.approximate))


def constructs(tree: exp.Expr, results: Mapping[str, str]) -> list[Construct]:
    """Every gated construct of `tree` (for the differential test), verified or not; an
    unverified construct's result family is sqlglot's guess."""
    walker = _Walker(results, collect=True)
    walker.run(typed(tree))
    return walker.found


APPROXIMATE_NAMES = frozenset({"approx_count_distinct", "percentile_approx", "approx_percentile"})


class _Walker:
    def __init__(self, results: Mapping[str, str], *, collect: bool) -> None:
        self.results = results
        self.collect = collect
        self.found: list[Construct] = []
        self.approximate: set[str] = set()
        self._memo: dict[int, str | None] = {}
        # a column read from a CTE, subquery or derived table -> (its source scope, name)
        self._sources: dict[int, tuple[Scope, str]] = {}

    def run(self, root: exp.Expr) -> None:
        self._sources = column_sources(root)
        for node in _walk(root):
            if _gated(node):
                self.family(node, {})
            elif isinstance(node, exp.Ordered):
                fam = self.family(_projection(node) or node.this, {})
                if fam and fam.startswith(("array", "map", "struct")):  # NULLs inside order apart
                    self._refuse(f"ORDER BY over a value of type {fam}", node)

    def _refuse(self, what: str, node: exp.Expr) -> None:
        if not self.collect:
            raise EmbeddedUnsupported(what)

    # ------------------------------------------------------------------ families

    def family(self, node: exp.Expr, env: Mapping[str, str]) -> str | None:
        if id(node) in self._memo:
            return self._memo[id(node)]
        fam = self._family(node, env)
        self._memo[id(node)] = fam
        if fam is not None and not env:
            node.meta["family"] = fam  # for the translation rules (decimal_average)
        return fam

    def _family(self, node: exp.Expr, env: Mapping[str, str]) -> str | None:
        if _gated(node):
            return self._construct(node, env)
        if isinstance(node, exp.Literal):
            return literal_family(node)
        if isinstance(node, exp.Null):
            return "null"
        if isinstance(node, exp.Boolean | exp.Not | exp.And | exp.Or | exp.Is | exp.Exists):
            if not isinstance(node, exp.Boolean | exp.Exists):
                for child in node.iter_expressions():
                    self.family(child, env)
            return "boolean"
        if (
            isinstance(node, exp.Identifier | exp.Column)
            and not (isinstance(node, exp.Column) and node.table)
            and node.name in env
        ):
            return env[node.name]
        if isinstance(node, exp.Column) and self._from_select(node):
            fam = self._source_column(*self._sources[id(node)], env)
            if fam is not None and fam != type_family(node.type):
                retype(node, fam)  # the translation rules read the type this rule found
            return fam
        if isinstance(node, exp.Paren | exp.Alias | exp.IgnoreNulls | exp.RespectNulls):
            return self.family(node.this, env)
        if isinstance(node, exp.Window):
            return self.family(node.this, env)
        if isinstance(node, exp.Interval):
            unit = node.args.get("unit")
            return f"interval {unit.name.lower()}" if unit is not None else "interval"
        if isinstance(node, exp.Star):
            return "*"
        if isinstance(node, exp.Var):
            return node.name.upper()
        if isinstance(node, exp.DataType):
            return "AS " + node.sql("databricks").replace(", ", ",")
        if isinstance(node, exp.Distinct):
            inner = [self.family(e, env) for e in node.expressions]
            return "distinct " + ", ".join(f or "?" for f in inner) if None not in inner else None
        if isinstance(node, exp.Subquery) and isinstance(node.this, exp.Select):
            projections = node.this.expressions
            return self.family(projections[0], env) if len(projections) == 1 else None
        return type_family(node.type)

    def _from_select(self, col: exp.Column) -> bool:
        """Whether `col` is read from a SELECT (or set operation) of this query; a VALUES
        list or a table function keeps sqlglot's type."""
        source = self._sources.get(id(col))
        return source is not None and isinstance(branches(source[0].expression)[0], exp.Select)

    def _source_column(self, scope: Scope, name: str, env: Mapping[str, str]) -> str | None:
        """The family of column `name` of a CTE, subquery or derived table: the family of
        the projection computing it (as this walker types it, so a verified construct's
        result family, not sqlglot's guess), or of a set operation's branches at its
        position, widened as Spark widens them; None when unknown."""
        selects = branches(scope.expression)
        if not selects or not isinstance(selects[0], exp.Select):
            return None
        names = [p.alias_or_name for p in selects[0].expressions]
        if name not in names:
            return None
        i = names.index(name)
        fams = []
        for branch in selects:
            if not isinstance(branch, exp.Select) or len(branch.expressions) <= i:
                return None
            fams.append(self.family(branch.expressions[i], env))
        return widen(fams)

    def _construct(self, node: exp.Expr, env: Mapping[str, str]) -> str | None:
        name = construct_name(node)
        arguments = self._arguments(node, env)
        args = tuple(a.family for a in arguments if a.in_key)
        if isinstance(node, _VARIADIC):
            args = tuple(sorted({a or "?" for a in args}))
        found = Construct(name, args, node, tuple(arguments))
        key = found.key
        if name in APPROXIMATE_NAMES:
            self.approximate.add(name)
        if self.collect:
            self.found.append(found)
            return self.results.get(key) or type_family(node.type)
        if None in args:
            raise EmbeddedUnsupported(f"{name}() over an argument of unknown type")
        if key not in self.results:
            raise EmbeddedUnsupported(key)
        return self.results[key]

    def _arguments(self, node: exp.Expr, env: Mapping[str, str]) -> list[Argument]:
        if isinstance(node, exp.Case):
            out = []
            for branch in node.args.get("ifs") or []:
                out.append(Argument(branch.this, self.family(branch.this, env), in_key=False))
                value = branch.args["true"]
                out.append(Argument(value, self.family(value, env)))
            for key in ("default", "this"):
                if node.args.get(key) is not None:
                    out.append(Argument(node.args[key], self.family(node.args[key], env)))
            return out
        if isinstance(node, exp.WithinGroup):
            out = [Argument(a, self.family(a, env)) for a in _args(node.this)]
            order = node.expression
            for o in order.expressions if isinstance(order, exp.Order) else []:
                out.append(Argument(o.this, self.family(o.this, env)))
            return out
        out = []
        element: str | None = None
        for key, arg in _named_args(node):
            if isinstance(arg, exp.Lambda):
                out.append(Argument(arg, self._lambda(node, arg, element, env), replace=False))
            elif _literal_arg(node, key, arg):
                out.append(Argument(arg, _literal_spelling(arg, key), replace=False))
            elif isinstance(arg, exp.Var | exp.DataType | exp.Star):
                out.append(Argument(arg, self.family(arg, env), replace=False))
            elif isinstance(arg, exp.Distinct):
                fam = self.family(arg, env)
                out.append(Argument(arg, fam, replace=False))
                out.extend(Argument(e, self.family(e, env), in_key=False) for e in arg.expressions)
            else:
                fam = self.family(arg, env)
                if element is None and fam and fam.startswith("array<"):
                    element = fam[len("array<") : -1]
                out.append(Argument(arg, fam))
        return out

    def _lambda(
        self, node: exp.Expr, fn: exp.Lambda, element: str | None, env: Mapping[str, str]
    ) -> str | None:
        params = [p.name for p in fn.expressions]
        bound = dict(env)
        if isinstance(node, exp.Reduce) and len(params) == 2:
            bound[params[0]] = self.family(node.args["initial"], env) or "?"
            bound[params[1]] = element or "?"
        elif params:
            bound[params[0]] = element or "?"
            for extra in params[1:]:
                bound[extra] = "integer"
        for inner in _walk(fn.this):
            if _gated(inner):
                self.family(inner, bound)
        body = self.family(fn.this, bound)
        return None if "?" in bound.values() or body is None else f"lambda {body}"


def _projection(ordered: exp.Ordered) -> exp.Expr | None:
    """The projection an ORDER BY key names by its alias, if any."""
    key, select = ordered.this, ordered.find_ancestor(exp.Select)
    if not (isinstance(key, exp.Column) and not key.table and select is not None):
        return None
    for p in select.expressions:
        if isinstance(p, exp.Alias) and p.alias == key.name:
            return p.this
    return None


def _walk(root: exp.Expr) -> Iterator[exp.Expr]:
    """Every node, not descending into lambdas (their bodies are typed with their parameters)."""
    yield root
    for child in root.iter_expressions():
        if isinstance(child, exp.Lambda):
            continue
        yield from _walk(child)


def _gated(node: exp.Expr) -> bool:
    if type(node) in OPERATORS or isinstance(node, exp.Bracket):  # an index: its base, bounds
        return True
    if not isinstance(node, exp.Func) or isinstance(node, _STRUCTURAL):
        return False
    parent = node.parent
    if isinstance(node, exp.If) and isinstance(parent, exp.Case):
        return False  # a CASE branch: the CASE is the construct
    return not (isinstance(parent, exp.WithinGroup) and parent.this is node)


def _args(node: exp.Expr) -> Iterator[exp.Expr]:
    for _, arg in _named_args(node):
        yield arg


def _named_args(node: exp.Expr) -> Iterator[tuple[str, exp.Expr]]:
    for key in node.arg_types:
        value = node.args.get(key)
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, exp.Expr):
                yield key, v


def _literal_arg(node: exp.Expr, key: str, arg: exp.Expr) -> bool:
    """Whether `arg` counts by its spelling: a unit, a pattern, a scale, a schema, a path."""
    if key in _LITERAL_ARGS or key in _LITERAL_ARGS_OF.get(type(node), set()):
        return True
    if isinstance(node, exp.Anonymous):
        positions = _LITERAL_POSITIONS.get(node.name.lower(), set())
        return any(node.expressions[i] is arg for i in positions if i < len(node.expressions))
    return False


def _literal_spelling(arg: exp.Expr, key: str) -> str | None:
    if isinstance(arg, exp.Var):
        return arg.name.upper()
    if isinstance(arg, exp.JSONPath):
        return "path"  # a literal JSON path (any key: the extraction is what is verified)
    if isinstance(arg, exp.Literal) and not arg.is_string:
        return arg.name
    if isinstance(arg, exp.Neg) and isinstance(arg.this, exp.Literal):
        return "-" + arg.this.name
    if isinstance(arg, exp.Literal) and arg.is_string:
        text: str | None = arg.name
        if key == "format":  # sqlglot keeps patterns in strftime form: spell them as Spark does
            text = format_time(
                arg.name, _DATABRICKS.INVERSE_TIME_MAPPING, _DATABRICKS.INVERSE_TIME_TRIE
            )
        return "'" + str(text).replace("'", "\\'") + "'"
    return None
