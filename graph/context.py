"""The runtime context: every client a node needs, frozen, built once per process.

Nodes reach the outside world only through the ports of `domain.ports` held here (never
state or module globals). `service.wiring.open_resources` builds the Context from
Settings; node and graph tests build one with doubles (tests/support/doubles.py::make_ctx).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from domain.data_versions import DataVersionGate
from domain.ports import (
    Cache,
    FixedTableSchemas,
    GenerationLog,
    Leases,
    LlmBudget,
    PostgresGateway,
    Registry,
    RollupStore,
    SafetyPolicy,
    SqlGenerator,
    TableSchemas,
    VerifiedAnswers,
    Warehouse,
)


@dataclass(frozen=True)
class Context:
    registry: Registry
    cache: Cache
    postgres: PostgresGateway | None = None
    warehouse: Warehouse | None = None
    llm: SqlGenerator | None = None
    generation_log: GenerationLog | None = None
    # owners' verified answers to questions (None: none are served)
    verified_answers: VerifiedAnswers | None = None
    llm_budget: LlmBudget | None = None  # per-tenant LLM rate limit (None: unlimited)
    refresh_min_interval_s: float = 0.0  # a forced refresh this soon after a live answer reuses it
    safety: SafetyPolicy = field(default_factory=SafetyPolicy)
    table_schemas: TableSchemas = field(default_factory=FixedTableSchemas)
    default_row_limit: int = 1000
    max_result_bytes: int = 8 * 1024 * 1024  # a bigger answer is refused, not shipped
    clock: Callable[[], float] = time.time
    # freshness at scale: one backend query per cache key across instances (None: no
    # leases, as in node tests), how long a follower waits for its leader, and how long
    # after a failed refresh the backend is tried again while a last good answer stands in
    leases: Leases | None = None
    lease_wait_s: float = 60.0
    failure_backoff_s: float = 5.0
    # rollups answering warehouse metrics from PostgreSQL (None: off, today's path)
    rollups: RollupStore | None = None
    # refresh when the data changes: the data versions this process knows (None: TTLs only)
    data_versions: DataVersionGate | None = None
