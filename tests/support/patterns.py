"""Sample strings for a pattern (the differential test's cases for regular expressions and
LIKE): strings that match a regular expression and strings that nearly do, so that what
Java's regex (Spark) and RE2 (DuckDB) read differently is exercised: anchors next to a
final line terminator, `.` over a carriage return, `\\s` over a vertical tab, `\\w` and
`\\d` over non-ASCII letters and digits, case folding beyond ASCII, empty matches, groups
and back-references.

The regular expression is read with Python's parser (close to Java's for what models
write); a pattern it cannot read gets only the generic samples (and the differential test
then finds no match and leaves the key unverified).
"""

from __future__ import annotations

import re
from re import _constants as c  # type: ignore[attr-defined]
from re import _parser as sre  # type: ignore[attr-defined]
from typing import Any

# what the differential test adds for every pattern: line terminators, non-ASCII letters
# whose case folds differ by engine, a vertical tab, an Arabic-Indic digit, specials
GENERIC = [
    "",
    "\n",
    "\r",
    "\x0b",
    "\u0085",
    "é",
    "É",
    "\u017f",
    "\u212a",
    "\u0663",
    "a.b",
    "$1\\",
    " x ",
]
MAX_SAMPLES = 40


def regex_samples(pattern: str) -> list[str]:
    """Strings that match `pattern` (several ways: fewest and more repetitions, each
    alternative, exotic characters in classes) and their near misses (with line
    terminators around, case swapped, doubled, cut), then the generic samples."""
    try:
        parsed = sre.parse(pattern)
    except (re.error, RecursionError, OverflowError):
        return list(GENERIC)
    bases: list[str] = []
    for more in (False, True):
        for branch in range(3):
            for exotic in (False, True):
                text = _gen(parsed, _Mode(more, branch, exotic))
                if text is not None and text not in bases:
                    bases.append(text)
    out: list[str] = []
    for m in bases[:6]:
        out.append(m)
    for m in bases[:3]:
        out += [
            m + "\n",
            "\n" + m,
            m + "\r\n",
            m + "\r",
            m + "\u0085",
            "x" + m + "y",
            m.upper(),
            m.swapcase(),
            m + m,
            m[:-1],
            m[1:],
        ]
    out += GENERIC
    seen: list[str] = []
    for s in out:
        if s not in seen:
            seen.append(s)
    return seen[:MAX_SAMPLES]


class _Mode:
    def __init__(self, more: bool, branch: int, exotic: bool) -> None:
        self.more, self.branch, self.exotic = more, branch, exotic
        self.groups: dict[int, str] = {}


_CATEGORY = {
    c.CATEGORY_DIGIT: ("7", "\u0663"),
    c.CATEGORY_NOT_DIGIT: ("x", "é"),
    c.CATEGORY_WORD: ("w", "é"),
    c.CATEGORY_NOT_WORD: ("-", "\u00a0"),
    c.CATEGORY_SPACE: (" ", "\x0b"),
    c.CATEGORY_NOT_SPACE: ("x", "\u00a0"),
}
_EXOTIC_LETTER = {"s": "\u017f", "k": "\u212a", "S": "\u017f", "K": "\u212a", "e": "É", "E": "é"}


def _gen(items: Any, mode: _Mode) -> str | None:
    out = []
    for op, av in items:
        piece = _one(op, av, mode)
        if piece is None:
            return None
        out.append(piece)
    return "".join(out)


def _one(op: Any, av: Any, mode: _Mode) -> str | None:
    if op is c.LITERAL:
        ch = chr(av)
        return _EXOTIC_LETTER.get(ch, ch) if mode.exotic else ch
    if op is c.NOT_LITERAL:
        return "x" if chr(av) != "x" else "y"
    if op is c.ANY:
        return "\r" if mode.exotic else "x"
    if op is c.IN:
        return _in(av, mode)
    if op is c.CATEGORY:
        return _CATEGORY.get(av, ("x", "x"))[mode.exotic]
    if op is c.SUBPATTERN:
        group, _, _, inner = av
        text = _gen(inner, mode)
        if text is not None and group is not None:
            mode.groups[group] = text
        return text
    if op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", c.MAX_REPEAT)):
        low, high, inner = av
        n = min(high, low + 2) if mode.more else low
        parts = [_gen(inner, mode) for _ in range(n)]
        return None if None in parts else "".join(p or "" for p in parts)
    if op is c.BRANCH:
        alternatives = av[1]
        return _gen(alternatives[mode.branch % len(alternatives)], mode)
    if op is c.GROUPREF:
        return mode.groups.get(av, "")
    if op in (c.AT, c.ASSERT, c.ASSERT_NOT):
        return ""
    return None


def _in(items: Any, mode: _Mode) -> str | None:
    if items and items[0][0] is c.NEGATE:
        banned = _class_chars(items[1:])
        return next((ch for ch in "x7-Q~ é" if ch not in banned), None)
    for op, av in items:
        if op is c.LITERAL:
            return chr(av)
        if op is c.RANGE:
            return chr(av[1]) if mode.exotic else chr(av[0])
        if op is c.CATEGORY:
            return _CATEGORY.get(av, ("x", "x"))[mode.exotic]
    return None


def _class_chars(items: Any) -> set[str]:
    out: set[str] = set()
    for op, av in items:
        if op is c.LITERAL:
            out.add(chr(av))
        elif op is c.RANGE:
            out |= {chr(i) for i in range(av[0], min(av[1], av[0] + 200) + 1)}
        elif op is c.CATEGORY:
            out |= set(_CATEGORY.get(av, ("", ""))[0])
    return out


# LIKE: (subject, pattern) pairs at the same positions of the two pools, so the
# differential test's rotation pairs each subject with its pattern: Spark's default escape
# is the backslash (DuckDB has none unless told), `_` and `%` over line terminators and
# non-ASCII letters, case for ILIKE
LIKE_PAIRS = [
    ("a_b", "a\\_b"),
    ("a\\xb", "a\\_b"),
    ("100%", "100\\%"),
    ("a\\b", "a\\\\b"),
    ("a\nb", "a_b"),
    ("a\r\nb", "a%b"),
    ("ÉCLAIR", "é%"),
    ("Straße", "%SS%"),
    ("abc", "a%"),
    ("ABC", "%b_"),
    ("", "%"),
    ("x", ""),
    ("a%", "a\\%"),
    ("ab", "a\\b"),
]


def sql_string(text: str) -> str:
    """`text` as a Databricks string literal."""
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == "'":
            out.append("\\'")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 32 or 0x7F <= ord(ch) <= 0xA0 or ch in "\u2028\u2029":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "'" + "".join(out) + "'"
