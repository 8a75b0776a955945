"""Who is calling: the verified principal every request runs as.

A principal comes from a JWT bearer token, an API key, or (dev mode only, loopback only)
the dev principal. It names a tenant (the only widgets it sees), the scopes it holds and
the attribute claims row filters compare with (the demo's `regions`). Pure: no framework.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

DEFAULT_TENANT = "default"

# Every scope the API knows, and what it allows.
SCOPES: Mapping[str, str] = MappingProxyType(
    {
        "data:read": "resolve widgets (single, batch, stream)",
        "widgets:read": "read and list widget specs",
        "widgets:write": "create, replace and delete widget specs",
        "metrics:read": "read the metric catalog",
        "sql:generate": "generate checked SQL without running it (spends LLM budget)",
        "audit:read": "read the audit log of widget writes",
        "answers:verify": "mark (or withdraw) a widget question's verified answer",
        "ops:read": "see /readyz's details (components, auth mode, registry, widget counts)",
    }
)
ALL_SCOPES: frozenset[str] = frozenset(SCOPES)

Via = Literal["jwt", "api_key", "dev"]


def claim_values(value: Any) -> tuple[str, ...]:
    """The canonical form of an attribute claim's values: a sorted, deduplicated tuple of
    strings. Type-normalized, so `1`, `1.0` and `"1"` are the same value and `true` is
    `"true"`; a scalar is a one-value list; anything that is not a scalar (objects, nested
    lists, null) contributes nothing (so a malformed claim grants nothing)."""
    items = value if isinstance(value, (list, tuple, set, frozenset)) else [value]
    out: set[str] = set()
    for item in items:
        if isinstance(item, bool):
            out.add("true" if item else "false")
        elif isinstance(item, int):
            out.add(str(item))
        elif isinstance(item, float):
            out.add(str(int(item)) if item.is_integer() else repr(item))
        elif isinstance(item, str):
            out.add(item)
    return tuple(sorted(out))


def parse_scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    """`scope` (space-separated, the OAuth 2 convention) and/or `scopes` / `scp` lists."""
    found: set[str] = set()
    for name in ("scope", "scopes", "scp"):
        raw = claims.get(name)
        if isinstance(raw, str):
            found.update(raw.split())
        elif isinstance(raw, (list, tuple)):
            found.update(s for s in raw if isinstance(s, str))
    return frozenset(found)


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    tenant: str
    scopes: frozenset[str]
    attributes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    via: Via = "jwt"
    unrestricted: bool = False  # no row filters at all (the dev principal only)

    def has(self, scope: str) -> bool:
        return scope in self.scopes

    @classmethod
    def build(
        cls,
        *,
        subject: str,
        tenant: str,
        scopes: Iterable[str],
        attributes: Mapping[str, Any] | None = None,
        via: Via,
    ) -> Principal:
        attrs = {str(k): claim_values(v) for k, v in (attributes or {}).items()}
        return cls(
            subject=subject,
            tenant=tenant,
            scopes=frozenset(scopes),
            attributes=MappingProxyType(attrs),
            via=via,
        )


DEV_PRINCIPAL = Principal(
    subject="dev",
    tenant=DEFAULT_TENANT,
    scopes=ALL_SCOPES,
    attributes=MappingProxyType({}),
    via="dev",
    unrestricted=True,
)
