"""Boot validation: the service refuses to start on inconsistent config, naming each entry."""

from __future__ import annotations

import gc
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from service.wiring import BootError
from tests.support.servers import (
    copy_config,
    create_database,
    drop_database,
    entry_point,
    running_service,
)

ROOT = Path(__file__).resolve().parents[2]


def broken_config(tmp_path: Path) -> Path:
    cfg = copy_config(tmp_path)
    routing = yaml.safe_load((cfg / "metric_routing.yaml").read_text())
    del routing["metrics"]["nba_taken_pct"]
    routing["metrics"]["claims_paid_amount"]["backend"] = "snowflake"
    (cfg / "metric_routing.yaml").write_text(yaml.safe_dump(routing))
    return cfg


async def test_boot_refuses_missing_routing_and_unknown_backend(tmp_path: Path) -> None:
    url = create_database()
    try:
        with pytest.raises(BootError) as err:
            async with running_service(
                database_url=url, config_dir=broken_config(tmp_path), data_dir=tmp_path
            ):
                pass
        assert "nba_taken_pct" in str(err.value) and "snowflake" in str(err.value)
    finally:
        drop_database(url)


def test_resolver_serve_exits_non_zero_naming_each_entry(tmp_path: Path) -> None:
    url = create_database()
    try:
        env = os.environ | {
            "DATABASE_URL": url,
            "SEED_DEMO": "true",  # a fresh database: the catalog the routing is checked against
            "CONFIG_DIR": str(broken_config(tmp_path)),
            "DATA_DIR": str(tmp_path),
            "PORT": "0",
        }
        proc = subprocess.run(
            [entry_point("resolver"), "serve"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode != 0
        out = proc.stdout + proc.stderr
        assert "nba_taken_pct" in out and "snowflake" in out and "claims_paid_amount" in out
    finally:
        drop_database(url)


def test_the_serve_helper_reports_a_service_that_exits_at_boot(tmp_path: Path) -> None:
    """tests.support.servers.resolver_serve (the tests' way to run `resolver serve`) fails with the
    process's own words when it does not come up, instead of waiting out its timeout."""
    from tests.support.servers import free_port, resolver_serve

    env = dict(os.environ) | {"PORT": str(free_port()), "WORKERS": "0"}  # refused by Settings
    with (
        pytest.raises(AssertionError, match=r"(?s)resolver serve exited.*(WORKERS|workers)"),
        resolver_serve(env, tmp_path / "serve.log", timeout_s=60),
    ):
        pass


async def test_a_booted_service_keeps_its_boot_heap_out_of_the_collectors_reach(
    tmp_path: Path,
) -> None:
    """A full collection then scans what requests allocated, not the whole boot heap (a
    pause of tens of milliseconds in some request's latency)."""
    gc.unfreeze()
    url = create_database()
    try:
        async with running_service(database_url=url, data_dir=tmp_path):
            assert gc.get_freeze_count() > 10_000
        assert gc.get_freeze_count() == 0  # the shutdown gives them back
    finally:
        drop_database(url)
