"""What the embedded DuckDB engine refuses: constructs whose DuckDB answer would differ
from Databricks' and that have no faithful translation (adapters/transpile_rules/ holds
the translations). A refusal is a `databricks_error` naming the construct, never a
silently different answer; each is pinned by a query of the fidelity corpus.
"""

from __future__ import annotations

from sqlglot import exp

UNSUPPORTED = "is not supported on the embedded engine (DuckDB); it runs on Databricks"


class TranspileError(ValueError):
    """The SQL is not one query that can be translated to DuckDB."""


class EmbeddedUnsupported(TranspileError):
    """A construct the embedded engine cannot run with Databricks' meaning."""

    def __init__(self, construct: str) -> None:
        super().__init__(f"{construct} {UNSUPPORTED}")
        self.construct = construct


# sqlglot classes (by the Databricks function they come from) whose DuckDB result differs.
REFUSED_CLASSES: dict[type[exp.Expr], str] = {
    exp.Skewness: "skewness()",
    exp.MapKeys: "map_keys()",
    exp.MapContainsKey: "map_contains_key()",
    exp.Kurtosis: "kurtosis()",
    exp.ArrayDistinct: "array_distinct()",
    exp.SubstringIndex: "substring_index()",
    exp.WidthBucket: "width_bucket()",
    exp.SafeAdd: "try_add()",
    exp.SafeSubtract: "try_subtract()",
    exp.SafeMultiply: "try_multiply()",
    exp.ToNumber: "to_number()",
    exp.ToChar: "to_char()",
    exp.ConvertTimezone: "convert_timezone()",
    exp.StrToMap: "str_to_map()",
    exp.Map: "map_from_arrays()",
    exp.ArrayPrepend: "array_prepend()",
    exp.ArrayCompact: "array_compact()",
    exp.ArrayExcept: "array_except()",
    exp.ArrayIntersect: "array_intersect()",
    exp.ArrayRemove: "array_remove()",
    exp.Flatten: "flatten()",
    exp.RegexpSubstr: "regexp_substr()",
    exp.Format: "format_string()",
    exp.Nanvl: "nanvl()",
}
# Functions sqlglot keeps by name (exp.Anonymous) that DuckDB lacks or answers differently.
_REFUSED = """map_values arrays_overlap array_union octet_length try_to_number try_to_timestamp try_avg
    try_sum btrim printf forall"""
REFUSED_NAMES: frozenset[str] = frozenset(_REFUSED.split())


def refuse_unsupported(tree: exp.Expr) -> None:
    """Raise `EmbeddedUnsupported` for the first construct DuckDB would answer differently."""
    for node in tree.walk():
        cls = type(node)
        if cls in REFUSED_CLASSES:
            raise EmbeddedUnsupported(REFUSED_CLASSES[cls])
        if cls is exp.Anonymous and node.name.lower() in REFUSED_NAMES:
            raise EmbeddedUnsupported(f"{node.name.lower()}()")
        if isinstance(node, exp.IntervalSpan):
            raise EmbeddedUnsupported("INTERVAL ... TO ... (a field span)")
        if isinstance(node, exp.TableSample):
            raise EmbeddedUnsupported("TABLESAMPLE (a random sample)")
        if isinstance(node, exp.Lateral) and node.args.get("outer"):
            raise EmbeddedUnsupported("LATERAL VIEW OUTER")
        if isinstance(node, exp.Exists) and not isinstance(node.this, exp.Query):
            raise EmbeddedUnsupported("exists() over an array")
        if isinstance(node, exp.Transform) and len(_lambda_params(node.expression)) > 1:
            raise EmbeddedUnsupported("transform() with an index argument")
        if isinstance(node, exp.Reduce) and node.args.get("finish") is not None:
            raise EmbeddedUnsupported("aggregate() with a finish function")
        if isinstance(node, exp.RegexpReplace) and _back_reference(node.args.get("replacement")):
            raise EmbeddedUnsupported(
                "regexp_replace() with a group reference or escape in its replacement "
                "(Java's $1 is not RE2's \\1)"
            )
        if isinstance(node, exp.Extract) and node.name.upper() in {"SECOND", "SECONDS", "S"}:
            raise EmbeddedUnsupported("extract(SECOND ...) with its fraction")


def _lambda_params(node: exp.Expr | None) -> list[exp.Expr]:
    return list(node.expressions) if isinstance(node, exp.Lambda) else []


def _back_reference(replacement: exp.Expr | None) -> bool:
    """Whether a replacement may refer to a group ($1) or escape (\\$): not a literal, or
    a literal with `$` or a backslash."""
    if replacement is None:
        return False
    if not (isinstance(replacement, exp.Literal) and replacement.is_string):
        return True
    return "$" in replacement.name or "\\" in replacement.name
