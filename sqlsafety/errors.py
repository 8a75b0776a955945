"""The safety layer's own exceptions (it imports nothing from the application).

    SafetyError                  anything this library raises on purpose
    ├── SafetyViolation          the SQL was rejected: `rule` names the rule, `reason` says why
    │   └── UnparseableSql       the text does not parse (rule ``parse``): fail closed
    └── PolicyError (ValueError) bad arguments: unknown dialect, malformed allowlist, max_rows < 1

`str(SafetyViolation)` is ``"rule: reason"``. The application maps `SafetyViolation` to
its own failure kind (nodes/safety_check.py: ``safety_violation``).
"""

from __future__ import annotations

from typing import Any


class SafetyError(Exception):
    """Base of every exception the safety layer raises deliberately."""


class SafetyViolation(SafetyError):
    """The SQL was rejected. `rule` is a short stable identifier, `reason` a sentence."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(f"{rule}: {reason}")
        self.rule = rule
        self.reason = reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rule={self.rule!r}, reason={self.reason!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.rule, self.reason)


class UnparseableSql(SafetyViolation):
    """The text does not parse in the requested dialect (rule ``parse``): fail closed."""

    def __init__(self, reason: str) -> None:
        super().__init__("parse", reason)

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.reason,)


class PolicyError(SafetyError, ValueError):
    """A bad argument to the checker itself (not a verdict on the SQL)."""
