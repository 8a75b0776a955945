"""The safety layer's exceptions: every rejection is a `SafetyViolation` naming its rule.

`SafetyViolation` is a `ResolverFailure` of kind `safety_violation`, so code that maps
failures to a degrade `source` needs no special case; `str()` is ``"rule: reason"``.
"""

from __future__ import annotations

from typing import Any

from domain.failures import FailureKind, ResolverFailure


class SafetyViolation(ResolverFailure):
    """The SQL was rejected. `rule` is a short stable identifier, `reason` a sentence."""

    kind = FailureKind.safety_violation

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
