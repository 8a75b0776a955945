"""The routing file and boot validation: what must be fixed before an instance serves."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from adapters.registry.snapshot import RegistrySnapshot
from domain import config
from domain.identity import DEFAULT_TENANT
from domain.models import MetricDef, RoutingEntry, validate_intent, widget_id_problem


def load_routing(path: Path) -> dict[str, RoutingEntry]:
    """config/metric_routing.yaml -> {metric: RoutingEntry}. ValueError names the bad entry."""
    return config.load_routing(path)


def validate_boot(
    snapshot: RegistrySnapshot,
    *,
    postgres_problems: Callable[[MetricDef], list[str]] | None = None,
) -> list[str]:
    """Everything that must be fixed before serving; each problem names its entry.
    `postgres_problems` (the gateway's check of a metric definition) also checks that each
    metric's definition can be served by the backend it is routed to."""
    metrics = snapshot.metrics()
    routing = snapshot.routings()
    problems = list(snapshot.load_errors)
    for name, entry in sorted(routing.items()):
        metric = metrics.get(name)
        if metric is None or postgres_problems is None:
            continue
        d = metric.definition
        if entry.backend == "postgres":
            problems += [
                f"{p} (it is routed to postgres: fix its definition in metrics.yaml or route "
                "it to databricks)"
                for p in postgres_problems(metric)
            ]
        if entry.backend == "databricks" and (not d.measure or d.table.count(".") != 2):
            problems.append(
                f"metric {name!r} is routed to databricks but its definition has no warehouse "
                "measure on a three-part table"
            )
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
    for (tenant, wid), spec in sorted(snapshot.all_widgets().items()):
        name = wid if tenant == DEFAULT_TENANT else f"{tenant}/{wid}"
        id_problem = widget_id_problem(wid)
        problems += [f"widget {name!r}: {id_problem}"] if id_problem else []
        problems += [
            f"widget {name!r}: {err}" for err in validate_intent(spec.data_intent, metrics)
        ]
    return problems
