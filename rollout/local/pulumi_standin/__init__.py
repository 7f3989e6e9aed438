"""A recording stand-in for the Pulumi CLI (`bin/pulumi`), for the demo's sandbox and the tests.

The Pulumi CLI cannot be installed here, so `rollout demo --keep` and the deployer's tests run
the real Automation API (`rollout.release.deployer.PulumiDeployer`) against this script: it
answers the commands that API runs and keeps the stack (outputs, update history, lock, tags) in
the JSON file named by FAKE_PULUMI_STATE. What it answers and why: `bin/pulumi`'s docstring.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent  # PulumiCommand(root=ROOT) runs ROOT/bin/pulumi
BIN = ROOT / "bin"
STATE_ENV = "FAKE_PULUMI_STATE"
LOG_ENV = "FAKE_PULUMI_LOG"


def search_path(rest: str = "/usr/bin:/bin") -> str:
    """PATH with the stand-in first; its `#!/usr/bin/env python3` must find this interpreter
    (grpc, pulumi, yaml)."""
    return f"{BIN}:{Path(sys.executable).parent}:{rest}"


def stack_state(
    outputs: dict[str, Any] | None = None,
    history: list[dict[str, Any]] | None = None,
    lock: str | None = None,
    fail_next_up: bool = False,
    tags: dict[str, str] | None = None,
    fail_tag_set: bool = False,
) -> dict[str, Any]:
    """One stack as the stand-in keeps it; `fail_tag_set`: a backend refusing tag writes."""
    return {
        "outputs": outputs or {},
        "history": history or [],
        "lock": lock,
        "failNextUp": fail_next_up,
        "tags": tags or {},
        "failTagSet": fail_tag_set,
    }


def write_state(path: Path, stacks: dict[str, dict[str, Any]]) -> None:
    """Seed the stand-in's state file: {stack name: stack_state(...)}."""
    path.write_text(json.dumps({"stacks": stacks}))


def read_state(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())
