"""Test harness around the recording Pulumi CLI stand-in in `bin/pulumi`.

The Pulumi CLI cannot be installed here, so the deployer's tests run the real Automation API
against this stand-in: `FakePulumi` seeds the stand-in's stack state, puts it first on PATH and
reads back every command the SDK ran.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent  # PulumiCommand(root=ROOT) runs ROOT/bin/pulumi
BIN = ROOT / "bin"
REPO = ROOT.parents[2]


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
        monkeypatch.setenv("FAKE_PULUMI_STATE", str(self.state_file))
        monkeypatch.setenv("FAKE_PULUMI_LOG", str(self.log_file))
        # the stand-in's `#!/usr/bin/env python3` must find this interpreter (grpc, pulumi, yaml)
        monkeypatch.setenv("PATH", f"{BIN}:{Path(sys.executable).parent}:/usr/bin:/bin")
        self.root = ROOT
        self.sleeps: list[float] = []  # the deployer's scale-down delays, recorded instead of slept
        self.seed()

    def sleep(self, seconds: float) -> None:
        """Hand to PulumiDeployer(sleep=...): the delay is recorded, the test does not wait."""
        self.sleeps.append(seconds)

    def seed(
        self,
        stack: str = "prod",
        outputs: dict[str, Any] | None = None,
        history: list[dict[str, Any]] | None = None,
        lock: str | None = None,
        fail_next_up: bool = False,
        tags: dict[str, str] | None = None,
    ) -> None:
        state = {
            "stacks": {
                stack: {
                    "outputs": outputs or {},
                    "history": history or [],
                    "lock": lock,
                    "failNextUp": fail_next_up,
                    "tags": tags or {},
                }
            }
        }
        self.state_file.write_text(json.dumps(state))

    def state(self, stack: str = "prod") -> dict[str, Any]:
        return json.loads(self.state_file.read_text())["stacks"][stack]

    def calls(self) -> list[dict[str, Any]]:
        if not self.log_file.exists():
            return []
        return [json.loads(line) for line in self.log_file.read_text().splitlines()]

    def commands(self) -> list[list[str]]:
        """argv of every call, without the `--non-interactive` the SDK adds to all of them."""
        return [[a for a in c["argv"] if a != "--non-interactive"] for c in self.calls()]

    def runs_of(self, verb: str) -> list[dict[str, Any]]:
        return [c for c in self.calls() if verb in c["argv"][:2]]
