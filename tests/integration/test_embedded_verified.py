"""The differential test: the embedded engine's verified set is what Spark and DuckDB agree on.

For every construct the fidelity corpus and the widgets use (adapters/embedded_rule.py
keys), sample values of each argument's type family run on local Spark (ANSI on, UTC) and
on the embedded DuckDB warehouse through the production path (tests/differential.py). The
committed adapters/embedded_verified.json must be exactly the result: a construct is run
by the embedded engine only if it is verified here, and any verified entry that now
disagrees fails this test. Regenerate with `make verified`.
"""

from __future__ import annotations

import json
from typing import Any

from adapters.embedded_rule import VERIFIED_PATH
from tests import differential


def test_verified_set_is_what_spark_and_duckdb_agree_on(spark: Any) -> None:
    committed = json.loads(VERIFIED_PATH.read_text())
    generated = differential.verified_set(spark)
    lost = {
        k: generated["refused"].get(k, "no longer used")
        for k in committed["verified"]
        if k not in generated["verified"]
    }
    assert lost == {}, f"verified entries that disagree now (run `make verified`): {lost}"
    gained = sorted(set(generated["verified"]) - set(committed["verified"]))
    assert gained == [], f"newly verified constructs: run `make verified` to admit {gained}"
    assert generated["verified"] == committed["verified"], "result families changed"
    # the refused keys (their first difference may read differently run to run: a clock, an
    # engine's error text)
    assert set(generated["refused"]) == set(committed["refused"])
