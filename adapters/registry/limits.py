"""Per-tenant widget limits, and a spec measured and hashed once (off the event loop).

The limits bound what one tenant can make every instance hold: how many widgets, how
large one spec is (its stored JSON), and how large its `mock_data` is. The service's
settings set them (WIDGET_MAX_PER_TENANT, WIDGET_SPEC_MAX_BYTES, WIDGET_MOCK_DATA_MAX_BYTES);
the HTTP layer answers each `LimitKind` with its own problem status.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Literal

from adapters.registry.snapshot import canonical_json
from domain.models import WidgetSpec

LimitKind = Literal["widget_count", "spec_bytes", "mock_data_bytes"]


@dataclass(frozen=True, slots=True)
class WidgetLimits:
    max_per_tenant: int = 500
    max_spec_bytes: int = 256 * 1024
    max_mock_data_bytes: int = 128 * 1024


class WidgetLimitExceeded(Exception):
    """A write over one of the tenant's limits (nothing was stored)."""

    def __init__(self, limit: LimitKind, detail: str) -> None:
        super().__init__(detail)
        self.limit: LimitKind = limit
        self.detail = detail


@dataclass(frozen=True, slots=True)
class PreparedWidget:
    """A spec as it will be stored: its JSON text, digest and sizes (computed once)."""

    spec: WidgetSpec
    text: str  # the JSON stored in widgets.spec (key order kept)
    digest: str  # spec_digest(spec): the snapshot's and the audit log's hash
    spec_bytes: int
    mock_data_bytes: int

    @classmethod
    def of(cls, spec: WidgetSpec) -> PreparedWidget:
        """CPU work proportional to the spec's size: call it off the event loop."""
        dumped = spec.model_dump(mode="json")
        text = json.dumps(dumped, separators=(",", ":"))
        return cls(
            spec=spec,
            text=text,
            digest=hashlib.sha256(canonical_json(dumped)).hexdigest(),  # = spec_digest
            spec_bytes=len(text.encode()),
            mock_data_bytes=len(canonical_json(dumped["mock_data"])),
        )

    def size_problem(self, limits: WidgetLimits) -> WidgetLimitExceeded | None:
        if self.spec_bytes > limits.max_spec_bytes:
            return WidgetLimitExceeded(
                "spec_bytes",
                f"the widget spec is {self.spec_bytes} bytes of JSON; the limit is "
                f"{limits.max_spec_bytes} (WIDGET_SPEC_MAX_BYTES)",
            )
        if self.mock_data_bytes > limits.max_mock_data_bytes:
            return WidgetLimitExceeded(
                "mock_data_bytes",
                f"mock_data is {self.mock_data_bytes} bytes of JSON; the limit is "
                f"{limits.max_mock_data_bytes} (WIDGET_MOCK_DATA_MAX_BYTES)",
            )
        return None


def count_problem(tenant: str, count: int, limits: WidgetLimits) -> WidgetLimitExceeded | None:
    """Refuse a new widget when `tenant` already has `count` (its existing ones are kept)."""
    if count < limits.max_per_tenant:
        return None
    return WidgetLimitExceeded(
        "widget_count",
        f"tenant {tenant!r} has {count} widgets, the limit (WIDGET_MAX_PER_TENANT) is "
        f"{limits.max_per_tenant}: delete one before creating another",
    )
