"""domain/config.py: the one reader of config/*.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain.config import (
    DEFAULT_CONFIG_DIR,
    ConfigError,
    config_dir,
    load_catalog,
    load_config,
    load_routing,
    load_widgets,
    parse_yaml,
)


def test_the_demo_config_loads_and_agrees_with_itself() -> None:
    cfg = load_config()
    assert cfg.metrics and cfg.widgets and cfg.routing
    assert set(cfg.routing) == set(cfg.metrics)
    assert {w.data_intent.metric_id for w in cfg.widgets.values()} <= set(cfg.metrics)


def test_config_dir_honours_the_argument_then_CONFIG_DIR(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CONFIG_DIR", raising=False)
    assert config_dir() == DEFAULT_CONFIG_DIR
    monkeypatch.setenv("CONFIG_DIR", str(tmp_path))
    assert config_dir() == tmp_path
    assert config_dir(DEFAULT_CONFIG_DIR) == DEFAULT_CONFIG_DIR


def test_a_duplicate_key_is_refused_naming_key_and_lines() -> None:
    text = "metrics:\n  a:\n    backend: postgres\n  b:\n    backend: databricks\n  a:\n    backend: databricks\n"
    with pytest.raises(
        ConfigError, match=r"f.yaml: duplicate key 'a' at line 6 \(first at line 2\)"
    ):
        parse_yaml(text, "f.yaml")


def test_a_duplicate_nested_key_is_refused_too() -> None:
    with pytest.raises(ConfigError, match=r"duplicate key 'backend' at line 3"):
        parse_yaml("m:\n  backend: postgres\n  backend: databricks\n")


def test_the_same_key_in_different_mappings_is_fine() -> None:
    assert parse_yaml("a: {x: 1}\nb: {x: 2}\n") == {"a": {"x": 1}, "b": {"x": 2}}


def test_a_duplicate_metric_in_the_routing_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "metric_routing.yaml"
    path.write_text(
        "metrics:\n  nba_taken_pct: {backend: postgres}\n  nba_taken_pct: {backend: databricks}\n"
    )
    with pytest.raises(ValueError, match=r"duplicate key 'nba_taken_pct' at line 3"):
        load_routing(path)


def test_loaders_name_the_file_and_the_bad_entry(tmp_path: Path) -> None:
    bad = tmp_path / "metrics.yaml"
    bad.write_text("metrics:\n  - {name: broken_metric, unit: x}\n")
    with pytest.raises(ConfigError, match=r"metrics.yaml: metric 'broken_metric'"):
        load_catalog(bad)
    bad = tmp_path / "widgets.yaml"
    bad.write_text("widgets:\n  'bad id!': {title: t}\n")
    with pytest.raises(ConfigError, match="not a valid id"):
        load_widgets(bad)
    bad.write_text("widgets: [\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_widgets(bad)
    with pytest.raises(ConfigError, match="file not found"):
        load_widgets(tmp_path / "missing.yaml")


def test_a_dimension_order_names_one_of_the_metrics_dimensions() -> None:
    from pydantic import ValidationError

    from domain.models import MetricDefinition

    ok = MetricDefinition(
        table="t", dimensions=["severity"], dimension_order={"severity": ["high", "low"]}
    )
    assert ok.dimension_order == {"severity": ["high", "low"]}
    with pytest.raises(ValidationError, match="not one of the dimensions"):
        MetricDefinition(table="t", dimensions=["team"], dimension_order={"severity": ["a"]})
    with pytest.raises(ValidationError, match="lists a value twice"):
        MetricDefinition(table="t", dimensions=["s"], dimension_order={"s": ["a", "a"]})
