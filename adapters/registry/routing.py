"""The routing file and boot validation: what must be fixed before an instance serves."""

from __future__ import annotations

from pathlib import Path

from adapters.registry.snapshot import RegistrySnapshot
from domain import config
from domain.models import RoutingEntry, validate_intent


def load_routing(path: Path) -> dict[str, RoutingEntry]:
    """config/metric_routing.yaml -> {metric: RoutingEntry}. ValueError names the bad entry."""
    return config.load_routing(path)


def validate_boot(snapshot: RegistrySnapshot) -> list[str]:
    """Everything that must be fixed before serving; each problem names its entry."""
    metrics = snapshot.metrics()
    routing = snapshot.routings()
    problems = list(snapshot.load_errors)
    invalid = {p.split("'")[1] for p in problems if p.startswith("routing for metric '")}
    problems += [
        f"metric {name!r} has no entry in metric_routing.yaml"
        for name in sorted(metrics)
        if name not in routing and name not in invalid  # an invalid entry is named already
    ]
    problems += [
        f"routing for metric {name!r}: metric is not in the catalog"
        for name in sorted(routing)
        if name not in metrics
    ]
    for wid, spec in sorted(snapshot.widgets().items()):
        problems += [f"widget {wid!r}: {err}" for err in validate_intent(spec.data_intent, metrics)]
    return problems
