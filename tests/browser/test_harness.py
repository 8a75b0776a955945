"""The browser suite never skips: without Chromium it fails and says what to install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.browser


def test_a_missing_browser_fails_the_suite_loudly(tmp_path: Path) -> None:
    env = os.environ | {"CHROMIUM_BIN": str(tmp_path / "no-chromium")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA",
         "tests/browser/test_dashboard.py", "-k", "screenshot"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "make browser-deps" in out and "never skips" in out, out
    assert "skipped" not in out.lower().replace("never skips", ""), out
