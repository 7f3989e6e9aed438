"""The replay library under the Day-0 plan's policy (stage canary), the scenarios that roll back: each scenario's
expected decision and time (rollout/local/scenarios.py says why). Real promtool and Prometheus
run every replay; the metrics are generated, standing in for a recorded stage."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.replays import assert_as_expected, replay_scenario

from rollout.local.scenarios import LIBRARY

NAMES = [name for name, spec in LIBRARY.items() if spec.expected and spec.expected.action == "rollback"]


@pytest.mark.parametrize("name", NAMES)
def test_a_fault_is_rolled_back_in_time(name: str, tmp_path: Path) -> None:
    spec = LIBRARY[name]
    assert_as_expected(spec, replay_scenario(spec, tmp_path))
