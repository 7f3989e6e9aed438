"""Test harness around the recording Pulumi CLI stand-in (rollout/local/pulumi_standin/bin/pulumi;
the demo's sandbox runs it too).

The Pulumi CLI cannot be installed here, so the deployer's tests run the real Automation API
against this stand-in: `FakePulumi` seeds the stand-in's stack state, puts it first on PATH and
reads back every command the SDK ran.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rollout.local.pulumi_standin import BIN, LOG_ENV, ROOT, STATE_ENV, read_state, search_path, stack_state, write_state

REPO = Path(__file__).resolve().parents[3]
__all__ = ["BIN", "REPO", "ROOT", "FakePulumi", "history_time", "update"]


def history_time(value: datetime) -> str:
    """The CLI's `stack history --json` time format."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def update(
    version: int,
    message: str,
    start: datetime,
    end: datetime | None = None,
    result: str = "succeeded",
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One `stack history --json` entry as the CLI prints it."""
    entry: dict[str, Any] = {
        "version": version,
        "kind": "update",
        "startTime": history_time(start),
        "message": message,
        "environment": {"exec.kind": "auto.local"},
        "config": {k: {"value": json.dumps(v), "secret": False} for k, v in (config or {}).items()},
        "result": result,
        "resourceChanges": {"update": 2},
    }
    if end is not None:
        entry["endTime"] = history_time(end)
    return entry


class FakePulumi:
    def __init__(self, tmp_path: Path, monkeypatch: Any) -> None:
        self.state_file = tmp_path / "fake-pulumi-state.json"
        self.log_file = tmp_path / "fake-pulumi-calls.jsonl"
        monkeypatch.setenv(STATE_ENV, str(self.state_file))
        monkeypatch.setenv(LOG_ENV, str(self.log_file))
        monkeypatch.setenv("PATH", search_path())
        self.root = ROOT
        self.sleeps: list[float] = []  # the deployer's scale-down delays, recorded instead of slept
        self.seed()

    def sleep(self, seconds: float) -> None:
        """Hand to PulumiDeployer(sleep=...): the delay is recorded, the test does not wait."""
        self.sleeps.append(seconds)

    def seed(self, stack: str = "prod", **state: Any) -> None:
        """The stand-in's only stack; `state`: stack_state's keywords (outputs, history, lock, ...)."""
        write_state(self.state_file, {stack: stack_state(**state)})

    def state(self, stack: str = "prod") -> dict[str, Any]:
        return read_state(self.state_file)["stacks"][stack]

    def calls(self) -> list[dict[str, Any]]:
        if not self.log_file.exists():
            return []
        return [json.loads(line) for line in self.log_file.read_text().splitlines()]

    def commands(self) -> list[list[str]]:
        """argv of every call, without the `--non-interactive` the SDK adds to all of them."""
        return [[a for a in c["argv"] if a != "--non-interactive"] for c in self.calls()]

    def runs_of(self, verb: str) -> list[dict[str, Any]]:
        return [c for c in self.calls() if verb in c["argv"][:2]]
