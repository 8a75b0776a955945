"""The differential test's samples for a pattern (tests/support/patterns.py): strings that
match each sampled regular expression and strings that do not, with the characters Java's
regex and RE2 read differently; and their Databricks literals."""

from __future__ import annotations

import re

import pytest
import sqlglot

from tests.support.patterns import GENERIC, LIKE_PAIRS, regex_samples, sql_string

PATTERNS = [
    "ment$",
    "^pay",
    "disk|cpu",
    r"(\w+) alert on (\S+):",
    "[aeiou]",
    "above [A-Z]+",
    "(.)",
    r"(CLM)-(\d+)",
    "[^0-9]+",
    r"(a)\1",
    r"\bcpu\b",
]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_samples_match_and_miss(pattern: str) -> None:
    samples = regex_samples(pattern)
    found = [re.search(pattern, s) is not None for s in samples]
    assert True in found and False in found, samples
    assert "" in samples and len(samples) == len(set(samples))


def test_a_pattern_with_empty_matches_gets_empty_and_longer_subjects() -> None:
    assert {"", "xx", "xy"} <= set(regex_samples("x*"))


def test_samples_carry_what_the_engines_read_differently() -> None:
    samples = regex_samples("ment$")
    assert {"ment", "ment\n", "ment\r\n", "ment\u0085"} <= set(samples)
    assert "\r" in regex_samples("(.)")  # Java's `.` stops at it, RE2's does not
    assert any("\x0b" in s for s in regex_samples(r"a\sb"))  # Java's \s has it, RE2's not
    assert any("\u0663" in s for s in regex_samples(r"\d+"))  # an Arabic-Indic digit


def test_a_pattern_python_cannot_read_gets_the_generic_samples() -> None:
    assert regex_samples("a(?<!") == GENERIC


@pytest.mark.parametrize("text", [*GENERIC, *(s for pair in LIKE_PAIRS for s in pair), "it's"])
def test_literals_read_back_as_written(text: str) -> None:
    tree = sqlglot.parse_one(f"SELECT {sql_string(text)}", read="databricks")
    assert isinstance(tree, sqlglot.exp.Select)
    assert tree.selects[0].name == text
