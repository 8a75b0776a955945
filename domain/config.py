"""The one reader of `config/*.yaml`: the metric catalog, the routing file (authoritative
for backends) and the demo widgets. Production code, tests and benches all load them here.

The folder is the `config_dir` given (the service passes Settings.config_dir, which
CONFIG_DIR sets), else $CONFIG_DIR, else the repository's `config/`. Every error is a
`ConfigError` (a ValueError) naming the file and what is wrong; a key written twice in
one mapping is refused with its name and both lines (YAML would silently keep the last).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from domain.models import MetricDef, RoutingEntry, WidgetSpec, widget_id_problem
from domain.rollups import NAME_RE, RollupDef

DEFAULT_CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
METRICS_FILE, ROUTING_FILE, WIDGETS_FILE = "metrics.yaml", "metric_routing.yaml", "widgets.yaml"
ROLLUPS_FILE = "rollups.yaml"


class ConfigError(ValueError):
    """A config file is missing, not YAML, or has an invalid entry (the message says which)."""


def config_dir(explicit: Path | str | None = None) -> Path:
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get("CONFIG_DIR")
    return Path(env) if env else DEFAULT_CONFIG_DIR


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader refusing a mapping that names one key twice."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
        line = key_node.start_mark.line + 1
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key: the base constructor reports it
            break
        if first is not None:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} at line {line} (first at line {first})",
                key_node.start_mark,
            )
        seen[key] = line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,  # type: ignore[arg-type]
)


def parse_yaml(text: str, where: str = "<string>") -> Any:
    """YAML text -> data; ConfigError on invalid YAML or a duplicate key (with its line)."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.constructor.ConstructorError as exc:
        raise ConfigError(f"{where}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML: {exc}") from None


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    return parse_yaml(text, str(path))


def first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()))
    msg = str(err.get("msg"))
    if err.get("type") == "literal_error":  # "Input should be 'a' or 'b'": say what it got
        msg += f", not {err.get('input')!r}"
    return f"{where}: {msg}" if where else msg


def load_catalog(path: Path) -> dict[str, MetricDef]:
    """config/metrics.yaml -> {name: MetricDef}. ConfigError names the bad entry."""
    data = read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), list):
        raise ConfigError(f"{path}: expected a top-level 'metrics' list")
    metrics: dict[str, MetricDef] = {}
    for i, raw in enumerate(data["metrics"]):
        label = raw.get("name", f"#{i}") if isinstance(raw, dict) else f"#{i}"
        try:
            metric = MetricDef.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(f"{path}: metric {label!r}: {first_error(exc)}") from None
        if metric.name in metrics:
            raise ConfigError(f"{path}: metric {metric.name!r} is defined twice")
        metrics[metric.name] = metric
    return metrics


def read_routing(path: Path) -> tuple[dict[str, RoutingEntry], list[str]]:
    """config/metric_routing.yaml -> ({metric: RoutingEntry}, problems): the entries that
    are valid, and one problem per invalid entry (naming it). ConfigError when the file
    itself is missing, not YAML, has a duplicate key or is not a mapping of metrics."""
    try:
        data = read_yaml(path)
    except ConfigError as exc:
        if "file not found" in str(exc):
            raise ConfigError(f"{path}: routing file not found") from None
        raise
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise ConfigError(f"{path}: expected a top-level 'metrics' mapping of metric -> routing")
    out: dict[str, RoutingEntry] = {}
    problems: list[str] = []
    for name, raw in data["metrics"].items():
        try:
            out[str(name)] = RoutingEntry.model_validate(raw)
        except ValidationError as exc:
            problems.append(f"routing for metric {name!r}: {first_error(exc)}")
    return out, problems


def load_routing(path: Path) -> dict[str, RoutingEntry]:
    """The routing file, every entry valid; ConfigError names each invalid entry."""
    routing, problems = read_routing(path)
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    return routing


def load_widgets(path: Path) -> dict[str, WidgetSpec]:
    """config/widgets.yaml -> {id: WidgetSpec}. ConfigError names the bad widget."""
    data = read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("widgets"), dict):
        raise ConfigError(f"{path}: expected a top-level 'widgets' mapping")
    widgets: dict[str, WidgetSpec] = {}
    for widget_id, raw in data["widgets"].items():
        if not isinstance(widget_id, str) or widget_id_problem(widget_id):
            raise ConfigError(f"{path}: widget id {widget_id!r} is not a valid id")
        try:
            widgets[widget_id] = WidgetSpec.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(f"{path}: widget {widget_id!r}: {first_error(exc)}") from None
    return widgets


def load_rollups(path: Path) -> dict[str, RollupDef]:
    """config/rollups.yaml -> {name: RollupDef} (shape only: the service checks tables,
    columns and metrics at boot). A missing file declares no rollups."""
    if not path.exists():
        return {}
    data = read_yaml(path)
    if not isinstance(data, dict) or set(data) - {"version", "rollups"}:
        raise ConfigError(f"{path}: expected a mapping with 'version' and 'rollups'")
    raw_rollups = data.get("rollups") or {}
    if not isinstance(raw_rollups, dict):
        raise ConfigError(f"{path}: 'rollups' must be a mapping of name -> rollup")
    rollups: dict[str, RollupDef] = {}
    for name, raw in raw_rollups.items():
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ConfigError(f"{path}: rollup name {name!r} must match {NAME_RE.pattern}")
        try:
            rollups[name] = RollupDef.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(f"{path}: rollup {name!r}: {first_error(exc)}") from None
    return rollups


@dataclass(frozen=True)
class ConfigFiles:
    """Everything under one config folder, parsed."""

    widgets: dict[str, WidgetSpec]
    metrics: dict[str, MetricDef]
    routing: dict[str, RoutingEntry]
    rollups: dict[str, RollupDef]


def load_config(directory: Path | str | None = None) -> ConfigFiles:
    folder = config_dir(directory)
    return ConfigFiles(
        widgets=load_widgets(folder / WIDGETS_FILE),
        metrics=load_catalog(folder / METRICS_FILE),
        routing=load_routing(folder / ROUTING_FILE),
        rollups=load_rollups(folder / ROLLUPS_FILE),
    )
